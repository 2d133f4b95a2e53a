"""Typed, flat configs: YAML file + dotted ``key=value`` overrides, validated all at once.

Each stage declares a dataclass whose fields carry their help text, allowed choices and range
in ``field(metadata=...)`` (see ``opt``). ``load_config`` collects every problem - unknown keys
(with a "did you mean"), wrong types, values out of range - and raises one ``ConfigError``
(exit code 2) listing them all.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from lmlab.errors import ConfigError


def opt(default: Any, help: str, *, choices: tuple | None = None, min: float | None = None,
        max: float | None = None, min_exclusive: bool = False):
    """A config field with its one-line help, allowed choices and range."""
    meta = {"help": help, "choices": choices, "min": min, "max": max,
            "min_exclusive": min_exclusive}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


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


def _unwrap_optional(tp) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _coerce(value: Any, tp: Any, from_string: bool) -> Any:
    """Convert ``value`` to ``tp`` or raise ValueError with a short reason."""
    tp, optional = _unwrap_optional(tp)
    if value is None or (from_string and optional and value in ("null", "None", "none", "~")):
        if optional:
            return None
        raise ValueError("must not be null")
    origin = typing.get_origin(tp)
    if origin is list:
        (item_tp,) = typing.get_args(tp) or (str,)
        if from_string and isinstance(value, str):
            text = value.strip()
            if text.startswith("[") and text.endswith("]"):  # the YAML flow form, [a, b]
                text = text[1:-1]
            value = [v.strip() for v in text.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ValueError("expected a list")
        return [_coerce(v, item_tp, from_string) for v in value]
    if origin is dict or tp is dict:
        if from_string and isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise ValueError("expected a mapping")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
            return False
        raise ValueError("expected true or false")
    if tp is int:
        if isinstance(value, bool):
            raise ValueError("expected an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ValueError("expected an integer")
    if tp is float:
        if isinstance(value, bool):
            raise ValueError("expected a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError("expected a number")
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ValueError("expected a string")
        return str(value)
    return value


def _type_name(tp) -> str:
    tp, optional = _unwrap_optional(tp)
    name = getattr(tp, "__name__", str(tp))
    if typing.get_origin(tp) is list:
        name = f"list[{getattr(typing.get_args(tp)[0], '__name__', 'str')}]"
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


def parse_overrides(items: list[str]) -> tuple[dict[str, str], list[str]]:
    out, problems = {}, []
    for item in items:
        if "=" not in item:
            problems.append(f"'{item}' is not key=value")
            continue
        k, v = item.split("=", 1)
        out[k.strip()] = v
    return out, problems


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must hold a mapping of key: value, not {type(data).__name__}")
    return data


def build_config(cls: type, values: dict[str, Any], overrides: dict[str, str] | None = None,
                 *, source: str | None = None, extra_problems: list[str] | None = None):
    """Make ``cls`` from YAML ``values`` then string ``overrides``; report every problem once."""
    problems = list(extra_problems or [])
    hints = typing.get_type_hints(cls)
    by_name = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for origin, mapping, from_string in (("file", values, False), ("override", overrides or {}, True)):
        for key, raw in mapping.items():
            if key not in by_name:
                close = difflib.get_close_matches(key, list(by_name), n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                problems.append(f"unknown key '{key}'{hint}")
                continue
            try:
                kwargs[key] = _coerce(raw, hints[key], from_string)
            except ValueError as e:
                problems.append(f"{key}: {e}, got {raw!r} ({_type_name(hints[key])})")
                continue
            if key in unused(cls) and kwargs[key] != by_name[key].default:
                problems.append(f"{key}: not used by this stage")  # (its default: saved configs)
    for name, f in by_name.items():
        value = kwargs.get(name, f.default if f.default is not dataclasses.MISSING else None)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING \
                and name not in kwargs:
            problems.append(f"{name}: required")
            continue
        if name in kwargs or f.default is not dataclasses.MISSING:
            err = _check_range(f, value)
            if err:
                problems.append(err)
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
    so a saved config can be passed back with ``--config``."""
    values = read_yaml(path) if path else {}
    ov, problems = parse_overrides(overrides or [])
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
