"""Pipelines: a list of stages in one YAML, run in order, each into its own run folder.

A step names a ``stage``, an optional ``config`` file and ``overrides``; ``${name}`` in an
override is the run folder of the earlier step ``name`` (``model: ${sft}``), ``${output_dir}``
the pipeline's folder. Every step's config is built and checked before anything runs, so a typo
in step 4 is reported before step 1 starts.

Each step runs into ``<output_dir>/<name>/``. A step is *done* (skipped) when its folder holds
``summary.json``, its saved ``config.yaml`` equals the config it would run with, and no step it
references finished after it. A step whose folder holds the same config and a checkpoint but no
summary was interrupted: it continues with ``resume=auto``. Anything else starts afresh
(``overwrite=true``). ``pipeline.json`` records what ran, for how long, and on what machine.
"""

from __future__ import annotations

import difflib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from lmlab.config import build_config, read_yaml, to_dict
from lmlab.errors import ConfigError

REF = re.compile(r"\$\{([^}]*)\}")
STEP_KEYS = ("name", "stage", "config", "overrides")
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
# keys the pipeline sets itself, and keys that do not change what a run computes
MANAGED = ("output_dir", "overwrite", "resume")
# resolved: what a run made of its auto keys (dtype=auto -> bf16 autocast ...), a record, not a key
IGNORED = ("stage", "resume", "overwrite", "progress", "resolved")


@dataclass
class Step:
    index: int  # 1-based, as the user counts
    name: str
    stage: str
    run_dir: Path
    cfg: Any  # the stage's Config
    module: Any
    deps: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"step {self.index} ({self.name})"


# --- planning: every step's config, built and checked before anything runs ------------------


def _substitute(value, refs: dict[str, str], allowed: set[str], where: str,
                problems: list[str], deps: list[str]):
    if isinstance(value, list):
        return [_substitute(v, refs, allowed, where, problems, deps) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, refs, allowed, where, problems, deps) for k, v in value.items()}
    if not isinstance(value, str):
        return value

    def one(m: re.Match) -> str:
        name = m.group(1).strip()
        if name == "output_dir":
            return refs[name]
        if name in allowed:
            if name not in deps:
                deps.append(name)
            return refs[name]
        if name in refs:
            problems.append(f"{where}: ${{{name}}} refers to a later step; steps run in order")
        else:
            close = difflib.get_close_matches(name, sorted(allowed), n=1)
            hint = f" (did you mean '${{{close[0]}}}'?)" if close else ""
            problems.append(f"{where}: unknown reference ${{{name}}}{hint}")
        return m.group(0)

    return REF.sub(one, value)


def _step_problems(i: int, raw, names: list[str]) -> list[str]:
    if not isinstance(raw, dict):
        return [f"step {i}: expected a mapping with name, stage, config, overrides"]
    problems = []
    for key in raw:
        if key not in STEP_KEYS:
            close = difflib.get_close_matches(str(key), STEP_KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"step {i}: unknown key '{key}'{hint}")
    name = raw.get("name", raw.get("stage"))
    if not isinstance(name, str) or not NAME_RE.match(name):
        problems.append(f"step {i}: name must be letters, digits, '_', '-', '.' (got {name!r})")
    elif name in names or name == "output_dir":
        problems.append(f"step {i}: name '{name}' is used twice (or reserved)")
    if not isinstance(raw.get("overrides", {}) or {}, dict):
        problems.append(f"step {i}: overrides must be a mapping of key: value")
    return problems


def plan(steps: list[dict], output_dir: str, profile: dict | None = None,
         loader: Callable[[str], Any] | None = None) -> tuple[list[Step], list[str]]:
    """Build every step's config; return (steps, problems). ``profile`` maps step names to extra
    overrides. ``loader(stage) -> module`` (default: the real stages)."""
    from lmlab.stages import STAGES, load_stage

    loader = loader or load_stage
    known = STAGES if loader is load_stage else None
    problems: list[str] = []
    if not steps:
        problems.append("steps: a pipeline needs at least one step")
    raw_names = [s.get("name", s.get("stage")) if isinstance(s, dict) else None for s in steps]
    refs = {"output_dir": output_dir}
    refs.update({n: str(Path(output_dir) / n) for n in raw_names if isinstance(n, str)})
    for extra in set(profile or {}) - {n for n in raw_names if isinstance(n, str)}:
        problems.append(f"profile: names no step '{extra}'")
    out, names = [], []
    for i, raw in enumerate(steps, 1):
        bad = _step_problems(i, raw, names)
        problems += bad
        if bad:
            names.append(raw.get("name") if isinstance(raw, dict) else None)
            continue
        name = raw.get("name", raw.get("stage"))
        names.append(name)
        step = _plan_step(i, name, raw, refs, set(n for n in names[:-1] if n),
                          (profile or {}).get(name) or {}, output_dir, loader, known, problems)
        if step is not None:
            out.append(step)
    return out, problems


def _plan_step(i, name, raw, refs, allowed, extra, output_dir, loader, known, problems):
    where = f"step {i} ({name})"
    stage = raw.get("stage")
    if not isinstance(stage, str):
        problems.append(f"{where}: stage is required")
        return None
    if known is not None and stage not in known:
        close = difflib.get_close_matches(stage, list(known), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        problems.append(f"{where}: unknown stage '{stage}'{hint}")
        return None
    values: dict = {}
    if raw.get("config"):
        try:
            values = dict(read_yaml(raw["config"]))
        except ConfigError as e:
            problems.append(f"{where}: {e.problems[0]}")
            return None
        saved = values.pop("stage", stage)
        if saved != stage:
            problems.append(f"{where}: {raw['config']} is a '{saved}' config, not '{stage}'")
    overrides = {**(raw.get("overrides") or {}), **extra}
    for key in MANAGED:
        if key in overrides:
            problems.append(f"{where}: {key} is set by the pipeline (the step's run folder is "
                            f"{output_dir}/{name})")
    deps: list[str] = []
    overrides = _substitute(overrides, refs, allowed, where, problems, deps)
    run_dir = Path(output_dir) / name
    module = loader(stage)
    values.update(overrides)
    names = {f for f in getattr(module.Config, "__dataclass_fields__", {})}
    if "output_dir" in names:
        values["output_dir"] = str(run_dir)
    for key in ("overwrite", "resume"):  # the pipeline decides these when the step runs
        values.pop(key, None)
    try:
        cfg = build_config(module.Config, values, source=raw.get("config") or None)
    except ConfigError as e:
        problems += [f"{where}: {p}" for p in e.problems]
        return None
    return Step(i, name, stage, run_dir, cfg, module, deps)


# --- state of a step's run folder -----------------------------------------------------------


def comparable(cfg_dict: dict) -> dict:
    """A config as saved in ``config.yaml``, without the keys that do not change results."""
    d = yaml.safe_load(yaml.safe_dump(cfg_dict, sort_keys=False)) or {}
    return {k: v for k, v in d.items() if k not in IGNORED}


def step_state(step: Step, finished: dict[str, float]) -> str:
    """'done', 'resume' or 'fresh'. ``finished`` maps step names to when their summary.json was
    written (this invocation's runs included)."""
    from lmlab.runs import checkpoint_steps

    saved_file, summary = step.run_dir / "config.yaml", step.run_dir / "summary.json"
    if not saved_file.exists():
        return "fresh"
    try:
        saved = comparable(yaml.safe_load(saved_file.read_text()) or {})
    except yaml.YAMLError:
        return "fresh"
    if saved != comparable(to_dict(step.cfg)):
        return "fresh"
    if summary.exists():
        mine = summary.stat().st_mtime
        if all(finished.get(d, 0.0) <= mine for d in step.deps):
            return "done"
        return "fresh"  # an input changed after this step finished
    if checkpoint_steps(step.run_dir / "checkpoints"):
        return "resume"
    return "fresh"


# --- running --------------------------------------------------------------------------------


def _record(path: Path, record: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / ".pipeline.json.tmp"
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    tmp.replace(path / "pipeline.json")


def _previous_walls(path: Path) -> dict[str, dict]:
    f = path / "pipeline.json"
    try:
        return {s["name"]: s for s in json.loads(f.read_text()).get("steps", [])}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def run_steps(steps: list[Step], output_dir: str, *, name: str = "", config_file: str = "",
              profile: str = "", log=print) -> dict:
    """Run ``steps`` in order (skipping done ones); write and return the pipeline record."""
    from lmlab.report.collect import environment

    out = Path(output_dir)
    before = _previous_walls(out)
    record = {"name": name, "config": config_file, "profile": profile,
              "output_dir": str(out), "environment": environment(), "steps": []}
    finished: dict[str, float] = {}
    t_all = time.time()
    for step in steps:
        state = step_state(step, finished)
        entry = {"name": step.name, "stage": step.stage, "run_dir": str(step.run_dir),
                 "state": state}
        if state == "done":
            log(f"[pipeline] {step.label}: {step.stage} is done in {step.run_dir}, skipped")
            old = before.get(step.name, {})
            entry.update({k: old[k] for k in ("wall_s", "started") if k in old})
        else:
            how = "continues from its last checkpoint" if state == "resume" else "starts"
            log(f"[pipeline] {step.label}: {step.stage} {how} -> {step.run_dir}")
            if hasattr(step.cfg, "resume"):
                step.cfg.resume = "auto" if state == "resume" else "no"
            if hasattr(step.cfg, "overwrite"):
                step.cfg.overwrite = state == "fresh" and step.run_dir.exists()
            entry["started"] = time.strftime("%Y-%m-%d %H:%M:%S")
            t0 = time.time()
            record["steps"].append({**entry, "state": "running"})
            _record(out, record)
            record["steps"].pop()
            try:
                step.module.run(step.cfg)
            except BaseException:
                log(f"[pipeline] {step.label} stopped after {time.time() - t0:.0f} s; the same "
                    "command again skips the finished steps and continues this one from its "
                    "last checkpoint (if it wrote one)")
                raise
            entry["wall_s"] = round(time.time() - t0, 1)
            log(f"[pipeline] {step.label}: finished in {entry['wall_s']:.0f} s")
        summary = step.run_dir / "summary.json"
        finished[step.name] = summary.stat().st_mtime if summary.exists() else time.time()
        record["steps"].append(entry)
        record["wall_s"] = round(time.time() - t_all, 1)
        _record(out, record)
    return record
