"""The launch form: built from a stage's typed ``Config`` (the source of ``lmlab STAGE --help``),
prefilled from a recipe in ``configs/<stage>/``, checked by the CLI's own config code.

Every field travels as text, as a ``key=value`` override does on the command line, so a value
means in the form what it means in a shell and is refused with the same message. A field left
at the stage's default is not sent. ``output_dir`` is a run name under the studio's root (the
form cannot write elsewhere), and it follows the CLI's rule: an existing run is continued only
with ``resume=auto`` and replaced only with ``overwrite=true``.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import yaml

from lmlab.config import build_config, describe, json_schema, read_yaml, unused
from lmlab.errors import ConfigError, UserError
from lmlab.studio.jobs import launchable
from lmlab.studio.paths import resolve_run


def configs_dir() -> Path:
    """The recipes folder: the source checkout's ``configs/`` (else ``./configs``)."""
    here = Path(__file__).resolve().parents[3] / "configs"
    return here if here.is_dir() else Path("configs").resolve()


def recipes(stage: str, folder: Path | None = None) -> list[str]:
    d = Path(folder or configs_dir()) / stage
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def as_text(value) -> str:
    """A config value as the text of its ``key=value`` override."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(as_text(v) for v in value)
    if isinstance(value, dict):
        return yaml.safe_dump(value, default_flow_style=True, sort_keys=False).strip() \
            if value else ""
    return str(value)


def _config(stage: str):
    if stage not in launchable():
        raise UserError(f"stage: unknown stage {stage!r}; stages: {', '.join(launchable())}")
    from lmlab.stages import load_stage

    return load_stage(stage)


def _recipe_values(stage: str, recipe: str | None, folder: Path | None) -> dict:
    if not recipe:
        return {}
    if recipe not in recipes(stage, folder):
        raise UserError(f"recipe: no recipe {recipe!r} for {stage} (recipes: "
                        f"{', '.join(recipes(stage, folder)) or 'none'})")
    values = read_yaml(Path(folder or configs_dir()) / stage / f"{recipe}.yaml")
    values.pop("stage", None)
    return values


def _kind(schema: dict) -> str:
    """How the page draws a field: checkbox, select, number or text (lists/mappings: text)."""
    part = next((p for p in schema.get("anyOf", [schema]) if p.get("type") != "null"), schema)
    if part.get("enum"):
        return "select"
    return {"boolean": "checkbox", "integer": "number", "number": "number"}.get(
        part.get("type"), "text")


def form(stage: str, recipe: str | None = None, folder: Path | None = None) -> dict:
    """The form of ``stage``: one field per key (type, default, choices, bounds, help, value
    from ``recipe``), in the order of ``--help``."""
    module = _config(stage)
    cls = module.Config
    schema = json_schema(cls)["properties"]
    types = {r[0]: r[1] for r in describe(cls)}  # the type names --help shows
    values = _recipe_values(stage, recipe, folder)
    fields = []
    for f in dataclasses.fields(cls):
        if f.name in unused(cls):
            continue
        m, s = f.metadata, schema[f.name]
        default = s.get("default")
        value = values.get(f.name, default)
        if f.name == "output_dir" and value:
            value = Path(str(value)).name  # a recipe's runs/<name>: the name under the root
        fields.append({"key": f.name, "type": types[f.name],
                       "kind": _kind(s), "help": m.get("help", ""),
                       "default": as_text(default), "value": as_text(value),
                       "choices": [as_text(c) for c in m.get("choices") or ()],
                       "min": m.get("min"), "max": m.get("max"),
                       "min_exclusive": bool(m.get("min_exclusive")),
                       "required": default is None and f.default is dataclasses.MISSING})
    return {"stage": stage, "help": module.HELP, "recipe": recipe or "",
            "recipes": recipes(stage, folder), "fields": fields,
            "help_rows": [list(r) for r in describe(cls)]}


def _field_of(problem: str, keys: list[str]) -> str:
    """The key a problem line is about ("max_steps: ..." / "unknown key 'x'"), else ''."""
    m = re.match(r"unknown key '([^'.]+)", problem)
    if m:
        return m.group(1)
    head = re.split(r"[:.\[ ]", problem, maxsplit=1)[0]
    return head if head in keys else ""


def check(stage: str, values: dict, root: Path) -> dict:
    """Validate a submitted form. Returns ``{ok, overrides, errors: {key: [msg]}, general}``;
    ``overrides`` (what ``JobQueue.submit`` takes) hold the keys that differ from the default,
    with ``output_dir`` made a folder under ``root``."""
    module = _config(stage)
    cls = module.Config
    defaults = {f["key"]: f["default"] for f in form(stage)["fields"]}
    errors: dict[str, list[str]] = {}
    general: list[str] = []
    overrides: dict[str, str] = {}
    if not isinstance(values, dict):
        return {"ok": False, "overrides": {}, "errors": {}, "general": ["expected key: value"]}
    for key, raw in values.items():
        text = as_text(raw) if not isinstance(raw, str) else raw
        if key in defaults and text == defaults[key]:
            continue
        overrides[str(key)] = text
    name = overrides.get("output_dir", "").strip()
    if "output_dir" not in defaults:
        name = None
    elif not name:
        model = overrides.get("model", defaults.get("model", "model"))
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{stage}-{Path(model).name}").strip("-")
    try:
        if name is not None:
            overrides["output_dir"] = str(resolve_run(root, name))
    except UserError as e:
        errors["output_dir"] = [f"output_dir: {str(e).split(': ', 1)[1]}"]
    try:
        cfg = build_config(cls, {}, overrides)
    except ConfigError as e:
        for p in e.problems:
            key = _field_of(p, list(defaults))
            (errors.setdefault(key, []) if key else general).append(p)
        cfg = None
    # the CLI's rule for a run folder, where the stage makes one (prepare_run)
    if cfg is not None and "output_dir" not in errors and {"resume", "overwrite"} <= set(defaults):
        from lmlab.runs import check_run_folder

        try:
            check_run_folder(Path(cfg.output_dir), stage, resume=getattr(cfg, "resume", "no"),
                             overwrite=bool(getattr(cfg, "overwrite", False)))
        except UserError as e:
            errors["output_dir"] = [str(e)]
    return {"ok": not errors and not general, "overrides": overrides, "errors": errors,
            "general": general}
