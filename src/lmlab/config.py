"""Typed, flat configs: YAML file + dotted ``key=value`` overrides, validated all at once.

Each stage declares a dataclass whose fields carry their help text, allowed choices and range
in ``field(metadata=...)`` (see ``opt``). ``load_config`` collects every problem - unknown keys
(with a "did you mean"), wrong types, values out of range - and raises one ``ConfigError``
(exit code 2) listing them all.

Types are checked by pydantic (a ``TypeAdapter`` per field type: nested lists and mappings,
no float that is nan or inf); the collecting, the messages, ``--help`` and the ranges are ours.
A mapping-typed key is set whole (``mapping: {prompt: question}`` in YAML) or one entry at a
time (``mapping.prompt=question``). ``json_schema`` describes a stage's config for a web form.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from lmlab.errors import ConfigError

# The fields of each row kind that a column mapping ({field: column}) may fill: what
# lmlab.data.formats reads. Kept here so that a config is checked without importing the data
# package (and torch); tests/test_config.py holds the two together.
ROW_FIELDS = {
    "text": ("text",),
    "chat": ("messages", "prompt", "completion", "system"),
    "preference": ("prompt", "chosen", "rejected"),
    "kto": ("prompt", "completion", "label"),
}


def opt(default: Any, help: str, *, choices: tuple | None = None, min: float | None = None,
        max: float | None = None, min_exclusive: bool = False, keys: tuple | None = None):
    """A config field with its one-line help, allowed choices and range; ``keys``: the keys a
    mapping-typed field may hold."""
    meta = {"help": help, "choices": choices, "min": min, "max": max,
            "min_exclusive": min_exclusive, "keys": keys}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


def row_fields(*kinds: str) -> tuple[str, ...]:
    """The mappable fields of rows of any of ``kinds``, in order, each once."""
    return tuple(dict.fromkeys(f for k in kinds for f in ROW_FIELDS[k]))


@dataclass
class RunConfig:
    """Keys every stage has."""

    model: str = opt("smollm2-135m-instruct",
                     "model reference: alias, tiny:<preset>, folder, run folder, or org/name")
    data: str = opt("task:add", "data source: file (.jsonl/.json/.csv/.parquet), HF dataset id, "
                                "or task:<name>[,<name>] for built-in tasks")
    output_dir: str = opt("", "run folder (default: runs/<stage>-<model>)")
    seed: int = opt(0, "random seed for data order, init and sampling")
    max_steps: int = opt(100, "optimizer steps to run", min=0)
    resume: str = opt("no", "resume from the last checkpoint: no | auto | <checkpoint folder>")
    overwrite: bool = opt(False, "replace an existing run in output_dir (it is deleted)")


# ----------------------------------------------------------------------------- parsing

# what ``null`` may be spelled as in an override of an optional key
_NULLS = ("null", "None", "none", "~")
# YAML's spellings of the floats no option accepts; an override is read as text, so these reach
# pydantic as numbers and are refused as "not finite" rather than "not a number"
_YAML_FLOATS = {".nan": float("nan"), ".inf": float("inf"), "+.inf": float("inf"),
                "-.inf": float("-inf")}
# pydantic's error types, in the words our messages have always used
_REASONS = {"int_parsing": "expected an integer", "int_type": "expected an integer",
            "int_from_float": "expected an integer", "float_parsing": "expected a number",
            "float_type": "expected a number", "bool_parsing": "expected true or false",
            "bool_type": "expected true or false", "string_type": "expected a string",
            "list_type": "expected a list", "dict_type": "expected a mapping",
            "finite_number": "must be a finite number, not nan or inf"}


class _Bad(ValueError):
    """Why a value does not fit its key's type: one (location inside the value, reason, the
    offending part, whether it is a part) per problem; the location is '' for the value."""

    def __init__(self, parts: list[tuple[str, str, Any, bool]]):
        super().__init__(parts[0][1])
        self.parts = parts


def _unwrap_optional(tp) -> tuple[Any, bool]:
    if _is_union(tp):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) < len(typing.get_args(tp)):
            return functools.reduce(lambda a, b: a | b, args), True
    return tp, False


def _is_union(tp) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _is_dict(tp) -> bool:
    return tp is dict or typing.get_origin(tp) is dict


def _dict_member(tp):
    """The ``dict`` type ``tp`` is or holds (``str | dict[str, str]``), else None."""
    tp, _ = _unwrap_optional(tp)
    members = typing.get_args(tp) if _is_union(tp) else (tp,)
    return next((m for m in members if _is_dict(m)), None)


def _branch(tp, value: Any, from_string: bool):
    """The member of a union that a value of this shape is meant for: a mapping (or, in an
    override, text in braces) for the dict member, a list for the list member, else the first
    scalar member. Checking one member keeps pydantic's report to that member's problems."""
    if not _is_union(tp):
        return tp
    members = typing.get_args(tp)
    if isinstance(value, dict) or (from_string and isinstance(value, str)
                                   and value.strip().startswith("{")):
        want = _is_dict
    elif isinstance(value, list):
        def want(m):
            return typing.get_origin(m) is list
    else:
        def want(m):
            return not _is_dict(m) and typing.get_origin(m) is not list
    return next((m for m in members if want(m)), members[0])


@functools.cache
def _adapter(tp):
    from pydantic import ConfigDict, TypeAdapter

    # No float is nan or inf. Numbers become text where text is wanted (``stop: [3]`` -> "3"),
    # except in a mapping: its text values are names (a column), never a number.
    return TypeAdapter(tp, config=ConfigDict(allow_inf_nan=False,
                                             coerce_numbers_to_str=not _is_dict(tp)))


def _from_text(value: str, tp):
    """An override's text shaped for ``tp``: lists split on commas, mappings read as YAML."""
    if typing.get_origin(tp) is list:
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):  # the YAML flow form, [a, b]
            text = text[1:-1]
        return [_YAML_FLOATS.get(v.strip(), v.strip()) for v in text.split(",") if v.strip()]
    if _is_dict(tp):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            raise _Bad([("", "expected a mapping such as {a: b} (or key.a=b overrides)",
                         value, False)]) from None
    if tp is float:
        return _YAML_FLOATS.get(value.strip(), value)
    return value


def _coerce(value: Any, tp: Any, from_string: bool) -> Any:
    """Convert ``value`` to ``tp`` (pydantic does the checking) or raise ``_Bad``."""
    tp, optional = _unwrap_optional(tp)
    if value is None or (from_string and optional and value in _NULLS):
        if optional:
            return None
        raise _Bad([("", "must not be null", value, False)])
    tp = _branch(tp, value, from_string)
    if from_string and isinstance(value, str):
        value = _from_text(value, tp)
    if isinstance(value, bool) and tp in (int, float):  # pydantic would take True as 1
        raise _Bad([("", _REASONS["int_type" if tp is int else "float_type"], value, False)])
    from pydantic import ValidationError

    try:
        return _adapter(tp).validate_python(value)
    except ValidationError as err:
        raise _Bad([_part(e) for e in err.errors()]) from None


def _part(error: dict) -> tuple[str, str, Any, bool]:
    loc = error["loc"]
    if loc and loc[-1] == "[key]":  # pydantic's mark for a mapping's key (loc[-2] is the key)
        return _where(loc[:-2]), "keys must be text", error["input"], True
    reason = _REASONS.get(error["type"], error["msg"][:1].lower() + error["msg"][1:])
    if error["type"] == "string_type" and isinstance(error["input"], bool):
        reason += " (YAML reads yes/no/on/off/true/false as booleans: quote it)"
    return _where(loc), reason, error["input"], bool(loc)


def _where(loc: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)


def _type_name(tp) -> str:
    tp, optional = _unwrap_optional(tp)
    if _is_union(tp):
        name = " | ".join(_type_name(m) for m in typing.get_args(tp))
    elif typing.get_origin(tp) is not None:
        name = str(tp).replace("typing.", "")
    else:
        name = getattr(tp, "__name__", str(tp))
    return f"{name} | null" if optional else name


def _check_range(f: dataclasses.Field, value: Any) -> str | None:
    m = f.metadata
    if m.get("choices") and value not in m["choices"]:
        close = difflib.get_close_matches(str(value), [str(c) for c in m["choices"]], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{f.name}: '{value}' is not one of {', '.join(map(str, m['choices']))}{hint}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        lo, hi = m.get("min"), m.get("max")
        if lo is not None and (value < lo or (m.get("min_exclusive") and value == lo)):
            op = ">" if m.get("min_exclusive") else ">="
            return f"{f.name}: {value} is out of range (must be {op} {lo})"
        if hi is not None and value > hi:
            return f"{f.name}: {value} is out of range (must be <= {hi})"
    return None


def _check_keys(f: dataclasses.Field, value: Any) -> list[str]:
    """A mapping's keys that the field does not know (``opt(keys=...)``), with a suggestion."""
    known = f.metadata.get("keys")
    if not known or not isinstance(value, dict):
        return []
    out = []
    for k in value:
        if k not in known:
            close = difflib.get_close_matches(str(k), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            out.append(f"{f.name}: unknown field '{k}'{hint}; the fields here: "
                       f"{', '.join(known)}")
    return out


def parse_overrides(items: list[str]) -> tuple[dict[str, str], list[str]]:
    out, problems = {}, []
    for item in items:
        if "=" not in item:
            problems.append(f"'{item}' is not key=value")
            continue
        k, v = item.split("=", 1)
        k = k.strip()
        if not k:
            problems.append(f"'{item}' has no key before '='")
        else:
            out[k] = v  # a key given twice: the last wins, as scripts that append overrides expect
    return out, problems


def read_yaml(path: str | Path) -> dict:
    """A YAML config file's mapping; every problem is a ConfigError naming the file (and the
    line: see ``lmlab.yamlfile``)."""
    from lmlab import yamlfile

    data = yamlfile.load(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        kind = {"list": "a list", "str": "a single string"}.get(type(data).__name__,
                                                               type(data).__name__)
        raise ConfigError(f"{path} must hold a mapping of key: value, not {kind}")
    return data


# ----------------------------------------------------------------------------- dotted keys


class _Dotted(dict):
    """Entries of a mapping-typed key given one at a time (``mapping.prompt=question``): they
    are added to what the key already holds, unless the same source set it whole too."""

    whole = False


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _fold_dotted(items: dict, hints: dict, problems: list[str]) -> dict:
    """``{"mapping.prompt": "q"}`` -> ``{"mapping": _Dotted(prompt="q")}`` for mapping-typed
    keys (any depth: ``profiles.fast.sft.max_steps``); a whole value in the same source is the
    base. Dotted names of unknown keys pass through (the caller reports them)."""
    wholes, dotted = {}, {}
    for key, raw in items.items():
        head, dot, rest = str(key).partition(".")
        if not dot or key in hints or head not in hints:
            wholes[key] = raw
        elif _dict_member(hints[head]) is None:
            problems.append(f"{key}: {head} is a {_type_name(hints[head])}, not a mapping; "
                            f"set it as {head}=...")
        else:
            node = dotted.setdefault(head, {})
            *path, leaf = rest.split(".")
            for part in path:
                if not isinstance(node.setdefault(part, {}), dict):
                    problems.append(f"{key}: {part} is given a value too, so it holds no keys")
                    break
                node = node[part]
            else:
                node[leaf] = raw
    out = {}
    for key, raw in wholes.items():
        if key not in dotted:
            out[key] = raw
        elif raw in (None, "", {}) or isinstance(raw, dict):
            out[key] = _Dotted(_merge(raw or {}, dotted.pop(key)))
            out[key].whole = True
        else:
            problems.append(f"{key}: given as {raw!r} and by {key}.<entry>; use one")
            dotted.pop(key)
    out.update({k: _Dotted(v) for k, v in dotted.items()})
    return out


def _unknown(key: str, names: list[str]) -> str:
    head, dot, rest = key.partition(".")
    close = difflib.get_close_matches(head, names, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}{dot}{rest}'?)" if close else ""
    return f"unknown key '{key}'{hint}"


def _said(key: str, tp, raw: Any, part: tuple[str, str, Any, bool]) -> str:
    where, reason, got, inside = part
    if inside:
        return f"{key}{where}: {reason}, got {got!r}"
    return f"{key}: {reason}, got {raw!r} ({_type_name(tp)})"


# ----------------------------------------------------------------------------- building


def build_config(cls: type, values: dict[str, Any], overrides: dict[str, str] | None = None,
                 *, source: str | None = None, extra_problems: list[str] | None = None):
    """Make ``cls`` from YAML ``values`` then string ``overrides``; report every problem once."""
    problems = list(extra_problems or [])
    hints = typing.get_type_hints(cls)
    by_name = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for items, from_string in ((values, False), (overrides or {}, True)):
        for key, raw in _fold_dotted(items, hints, problems).items():
            if key not in by_name:
                problems.append(_unknown(str(key), list(by_name)))
                continue
            if isinstance(raw, _Dotted) and not raw.whole \
                    and kwargs.get(key) not in (None, "", {}):
                if not isinstance(kwargs[key], dict):
                    problems.append(f"{key}: is {kwargs[key]!r}; {key}.<entry> adds to a "
                                    f"mapping (set {key}= first to replace it)")
                    continue
                raw = _merge(kwargs[key], raw)
            try:
                kwargs[key] = _coerce(raw, hints[key], from_string)
            except _Bad as bad:
                problems += [_said(key, hints[key], raw, part) for part in bad.parts]
                continue
            if key in unused(cls) and kwargs[key] != by_name[key].default:
                problems.append(f"{key}: not used by this stage")  # (its default: saved configs)
    for name, f in by_name.items():
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING \
                and name not in kwargs:
            problems.append(f"{name}: required")
            continue
        if name in kwargs or f.default is not dataclasses.MISSING:
            value = kwargs.get(name, f.default)
            err = _check_range(f, value)
            problems += ([err] if err else []) + _check_keys(f, value)
    if problems:
        raise ConfigError(problems, source)
    cfg = cls(**kwargs)
    post = getattr(cfg, "validate", None)
    if post is not None:
        more = post()
        if more:
            raise ConfigError(more, source)
    return cfg


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] | None = None,
                *, stage: str | None = None):
    """YAML file (optional) + ``key=value`` overrides -> a validated ``cls`` instance.

    A run folder's ``config.yaml`` carries ``stage:``; it is accepted when it names ``stage``,
    so a saved config can be passed back with ``--config`` (its ``resolved:`` record is
    skipped)."""
    values = read_yaml(path) if path else {}
    ov, problems = parse_overrides(overrides or [])
    values.pop("resolved", None)  # what a run made of its auto keys: a record, not a key
    if "stage" in values:
        saved = values.pop("stage")
        if stage is not None and saved != stage:
            problems.append(f"stage: this config is for '{saved}', not '{stage}'")
    return build_config(cls, values, ov, source=str(path) if path else None,
                        extra_problems=problems)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def unused(cls: type) -> tuple[str, ...]:
    """Keys a stage inherits from ``RunConfig`` but does not read (its ``UNUSED``): left out of
    ``--help``, and an error when set to anything but their default."""
    return getattr(cls, "UNUSED", ())


def describe(cls: type) -> list[tuple[str, str, str, str]]:
    """(key, type, default, help) rows for ``--help``."""
    hints = typing.get_type_hints(cls)
    rows = []
    for f in fields(cls):
        if f.name in unused(cls):
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        help_ = f.metadata.get("help", "")
        if f.metadata.get("choices"):
            help_ += f" [{' | '.join(map(str, f.metadata['choices']))}]"
        rows.append((f.name, _type_name(hints[f.name]), repr(default), help_))
    return rows


# ----------------------------------------------------------------------------- JSON schema


def json_schema(cls: type) -> dict:
    """The JSON schema (draft 2020-12) of a stage's config, for a form: each key's type (from
    pydantic), its help as the description, its default, choices as ``enum``, its range as
    bounds, a mapping's known keys as properties. Keys the stage does not use are left out."""
    hints = typing.get_type_hints(cls)
    props, required = {}, []
    for f in fields(cls):
        if f.name in unused(cls):
            continue
        props[f.name] = _field_schema(f, hints[f.name])
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    out = {"title": f"{cls.__module__}.{cls.__qualname__}", "type": "object",
           "properties": props, "additionalProperties": False}
    if required:
        out["required"] = required
    return out


def _field_schema(f: dataclasses.Field, tp) -> dict:
    schema = copy.deepcopy(_adapter(tp).json_schema())
    m = f.metadata
    branches = schema.get("anyOf", [schema])  # an optional key: the rule is on the value's part
    for part in branches:
        kind = part.get("type")
        if m.get("choices") and kind != "null":
            part["enum"] = list(m["choices"])
        if kind in ("integer", "number"):
            if m.get("min") is not None:
                part["exclusiveMinimum" if m.get("min_exclusive") else "minimum"] = m["min"]
            if m.get("max") is not None:
                part["maximum"] = m["max"]
        if kind == "object" and m.get("keys"):
            part["properties"] = {k: {"type": "string"} for k in m["keys"]}
            part["additionalProperties"] = False
    schema["description"] = m.get("help", "")
    if f.default is not dataclasses.MISSING:
        schema["default"] = f.default
    elif f.default_factory is not dataclasses.MISSING:
        schema["default"] = f.default_factory()
    return schema
