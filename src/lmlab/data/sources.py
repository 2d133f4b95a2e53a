"""Reading rows from files, Hugging Face datasets and built-in tasks.

``load_rows`` is the one entry point: it reads raw records with their 1-based location, reshapes
them with an optional column mapping, and validates each with ``normalize_row``. A bad record
raises DataError at ``file:line``; with ``on_error="skip"`` it is skipped, counted, and reported
in one warning instead - never silently dropped.

Line numbers: JSONL - the file line; CSV - the data row number + 1 (the header is line 1);
JSON (a list) and Parquet - the index + 1; a Hugging Face dataset - the index + 1.
"""

from __future__ import annotations

import csv
import json
import os
import re
import warnings
from pathlib import Path
from dataclasses import dataclass
from typing import Callable, Iterator

from lmlab.data.formats import KINDS, normalize_row
from lmlab.errors import DataError

FILE_TYPES = (".jsonl", ".json", ".csv", ".parquet")
_SHOWN_ERRORS = 5  # locations listed in the skip warning


class Rows(list):
    """A plain list of rows that also remembers what ``on_error="skip"`` left out."""

    def __init__(self, rows=(), errors: list[str] | None = None):
        super().__init__(rows)
        self.errors = list(errors or [])  # the located messages of the skipped rows
        self.skipped = len(self.errors)


def load_rows(source: str, kind: str, *, mapping: str | dict | None = None, split: str = "train",
              limit: int | None = None, on_error: str = "raise") -> list[dict]:
    """Rows of ``kind`` from ``source``, validated; at most ``limit`` of them.

    source: a ``.jsonl`` / ``.json`` / ``.csv`` / ``.parquet`` file, ``task:<name>[,<name>...]``,
    or a Hugging Face dataset id ``org/name`` (``split`` picks its split; files have one split).
    mapping: ``{target_field: source_column}`` or a preset name (see ``PRESETS``).
    on_error: "raise" (the first bad row raises DataError) or "skip" (count, warn once).
    """
    if kind not in KINDS:
        raise DataError(f"unknown row kind {kind!r}; expected one of {', '.join(KINDS)}")
    if on_error not in ("raise", "skip"):
        raise DataError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if source.startswith("task:"):
        if mapping:
            raise DataError("a column mapping does not apply to built-in tasks", file=source)
        records = _task_records(source, kind, split, limit)
    else:
        records = _records(source, split)
    reshape = _mapper(mapping, kind)
    return _validate(records, kind, reshape, limit, on_error, source)


def _validate(records: Iterator[tuple[str, int, object]], kind: str,
              reshape: Callable[[dict, str, int], dict], limit: int | None, on_error: str,
              source: str) -> Rows:
    rows, errors = [], []
    for file, line, record in records:
        if limit is not None and len(rows) >= limit:
            break
        try:
            if isinstance(record, DataError):  # a record the reader could not even parse
                raise record
            if isinstance(record, dict):
                record = reshape(record, file, line)
            rows.append(normalize_row(record, kind, file=file, line=line))
        except DataError as err:
            if on_error == "raise":
                raise
            errors.append(str(err))
    if not rows and not errors:
        raise DataError("no rows (the source is empty)", file=source)
    if errors:
        _warn_skipped(errors, len(rows) + len(errors), source)
    if not rows:
        raise DataError(f"all {len(errors)} rows are invalid; the first: {errors[0]}",
                        file=source)
    return Rows(rows, errors)


def _warn_skipped(errors: list[str], seen: int, source: str) -> None:
    shown = "\n  ".join(errors[:_SHOWN_ERRORS])
    more = f"\n  ... and {len(errors) - _SHOWN_ERRORS} more" if len(errors) > _SHOWN_ERRORS else ""
    warnings.warn(f"skipped {len(errors)} of {seen} rows of {source} (on_error=skip):\n  "
                  f"{shown}{more}", UserWarning, stacklevel=4)  # point at load_rows' caller


# --- readers: each yields (file, line, record); an unparsable record is yielded as a DataError


def _records(source: str, split: str) -> Iterator[tuple[str, int, object]]:
    path = Path(source)
    suffix = path.suffix.lower()
    if path.exists() and path.is_dir():
        raise DataError("is a folder; expected a .jsonl, .json, .csv or .parquet file",
                        file=source)
    if path.exists() or suffix in FILE_TYPES or source.startswith((".", "/", "~")):
        if not path.exists():
            raise DataError("no such file", file=source)
        if suffix not in FILE_TYPES:
            raise DataError(f"unsupported file type {suffix or '(none)'!r}; expected one of "
                            f"{', '.join(FILE_TYPES)}", file=source)
        if path.stat().st_size == 0:
            raise DataError("the file is empty", file=source)
        return _READERS[suffix](source)
    if re.fullmatch(r"[\w.-]+/[\w.-]+", source):
        return _hub_records(source, split)
    raise DataError("not a file and not a Hugging Face dataset id (org/name) or task:<name>",
                    file=source)


def _jsonl_records(file: str) -> Iterator[tuple[str, int, object]]:
    with open(file, encoding="utf-8") as f:
        for line_no, text in enumerate(f, start=1):
            if not text.strip():
                continue  # blank lines (a trailing newline, spacing) are not rows
            try:
                yield file, line_no, json.loads(text)
            except json.JSONDecodeError as err:
                yield file, line_no, DataError(f"not valid JSON ({err.msg} at column "
                                               f"{err.colno})", file=file, line=line_no)


def _json_records(file: str) -> Iterator[tuple[str, int, object]]:
    with open(file, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise DataError(f"not valid JSON ({err.msg} at column {err.colno})", file=file,
                            line=err.lineno) from None
    if not isinstance(data, list):
        raise DataError(f"a .json file must hold a list of row objects, got {type(data).__name__}"
                        " (use .jsonl for one object per line)", file=file, line=1)
    for i, record in enumerate(data):
        yield file, i + 1, record


def _csv_records(file: str) -> Iterator[tuple[str, int, object]]:
    with open(file, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        for i, record in enumerate(reader):
            line = i + 2  # the header is line 1
            if None in record:  # DictReader puts surplus cells under the key None
                yield file, line, DataError(f"{len(reader.fieldnames)} columns in the header but "
                                            "more cells in this row", file=file, line=line)
                continue
            yield file, line, record


def _parquet_records(file: str) -> Iterator[tuple[str, int, object]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(file)
    except Exception as err:  # pyarrow raises several types for a corrupt file
        raise DataError(f"cannot read as Parquet: {err}", file=file) from None
    for i, record in enumerate(table.to_pylist()):
        yield file, i + 1, record


def _hub_records(source: str, split: str) -> Iterator[tuple[str, int, object]]:
    """A Hugging Face dataset (needs the network or a warm datasets cache)."""
    import datasets

    try:
        ds = datasets.load_dataset(source, split=split)
    except Exception as err:  # offline, unknown id, unknown split: all the user's to fix
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise DataError(f"cannot load Hugging Face dataset split {split!r}{offline}: {err}",
                        file=source) from None
    for i, record in enumerate(ds):
        yield source, i + 1, record


def _task_records(source: str, kind: str, split: str, limit: int | None
                  ) -> Iterator[tuple[str, int, object]]:
    from lmlab.data.tasks import task_rows  # lazy: tasks import generators we rarely need

    names = [n.strip() for n in source.split(":", 1)[1].split(",") if n.strip()]
    if not names:
        raise DataError("no task names after 'task:'", file=source)
    for i, record in enumerate(task_rows(names, kind, split, limit, 0)):
        yield source, i + 1, record


_READERS = {".jsonl": _jsonl_records, ".json": _json_records, ".csv": _csv_records,
            ".parquet": _parquet_records}


# --- column mappings ----------------------------------------------------------------------------


def _mapper(mapping: str | dict | None, kind: str) -> Callable[[dict, str, int], dict]:
    """A function (record, file, line) -> record reshaped for ``kind``."""
    if mapping is None or mapping == {} or mapping == "":
        return lambda record, file, line: record
    if isinstance(mapping, dict):
        return lambda record, file, line: _rename(record, mapping, file, line)
    if mapping not in PRESETS:
        raise DataError(f"unknown mapping preset {mapping!r}; expected one of "
                        f"{', '.join(PRESETS)} or a {{target_field: source_column}} dict")
    preset = PRESETS[mapping]
    if kind not in preset.kinds:
        raise DataError(f"mapping {mapping!r} makes {' or '.join(preset.kinds)} rows, "
                        f"not {kind} rows")
    return lambda record, file, line: preset.apply(record, kind, file, line)


def _rename(record: dict, mapping: dict, file: str, line: int) -> dict:
    """Rename columns: ``{target: source}``; columns not mentioned are kept as they are."""
    out = {k: v for k, v in record.items() if k not in mapping.values()}
    for target, column in mapping.items():
        if column not in record:
            raise DataError(f"mapping wants column {column!r} for {target!r}, but the row has "
                            f"{', '.join(map(repr, record))}", file=file, line=line, field=column)
        out[target] = record[column]
    return out


# --- presets for public schemas: each turns one raw record into a row of the kinds it names -----


@dataclass(frozen=True)
class Preset:
    kinds: tuple[str, ...]
    apply: Callable[[dict, str, str, int], dict]  # (record, kind, file, line) -> row


def _column(record: dict, name: str, file: str, line: int, *, optional: bool = False) -> str:
    """A string column of a raw record (optional ones default to "")."""
    value = record.get(name)
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        got = "missing" if value is None else f"expected a string, got {type(value).__name__}"
        raise DataError(got, file=file, line=line, field=name)
    return value


def _instruction_chat(instruction: str, extra: str, response: str) -> dict:
    """One user turn (the instruction, then its context/input if any) and the reply."""
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    return {"messages": [{"role": "user", "content": user},
                         {"role": "assistant", "content": response}]}


def _dolly(record: dict, kind: str, file: str, line: int) -> dict:
    # databricks-dolly-15k: instruction, context (often empty), response, category
    return _instruction_chat(_column(record, "instruction", file, line),
                             _column(record, "context", file, line, optional=True),
                             _column(record, "response", file, line))


def _alpaca(record: dict, kind: str, file: str, line: int) -> dict:
    # tatsu-lab/alpaca: instruction, input (often empty), output
    return _instruction_chat(_column(record, "instruction", file, line),
                             _column(record, "input", file, line, optional=True),
                             _column(record, "output", file, line))


_HH_TURN = re.compile(r"\n\n(Human|Assistant): ?")


def _hh_transcript(text: str, field: str, file: str, line: int) -> list[dict]:
    """Parse an hh-rlhf transcript ("\\n\\nHuman: ...\\n\\nAssistant: ...") into messages."""
    parts = _HH_TURN.split(text)  # ["", "Human", "hi", "Assistant", "hello", ...]
    if parts[0].strip() or len(parts) < 3:
        raise DataError("expected a transcript starting with '\\n\\nHuman: '", file=file,
                        line=line, field=field)
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[who], "content": said.strip()}
            for who, said in zip(parts[1::2], parts[2::2])]


def _hh_rlhf(record: dict, kind: str, file: str, line: int) -> dict:
    # Anthropic/hh-rlhf: chosen and rejected are whole transcripts that share all but the
    # final assistant reply.
    chosen = _hh_transcript(_column(record, "chosen", file, line), "chosen", file, line)
    if kind == "chat":
        return {"messages": chosen}
    rejected = _hh_transcript(_column(record, "rejected", file, line), "rejected", file, line)
    if chosen[:-1] != rejected[:-1]:
        raise DataError("the chosen and rejected transcripts do not share the same conversation "
                        "before the final reply", file=file, line=line, field="rejected")
    for field, msgs in (("chosen", chosen), ("rejected", rejected)):
        if msgs[-1]["role"] != "assistant":
            raise DataError("the transcript does not end with an Assistant reply", file=file,
                            line=line, field=field)
    return {"prompt": chosen[:-1], "chosen": chosen[-1]["content"],
            "rejected": rejected[-1]["content"]}


def _ultrafeedback(record: dict, kind: str, file: str, line: int) -> dict:
    # HuggingFaceH4/ultrafeedback_binarized: prompt (str), chosen and rejected as message lists
    # that repeat the prompt, plus scores we do not need.
    for field in ("chosen", "rejected"):
        if not isinstance(record.get(field), list) or not record[field]:
            raise DataError("expected a non-empty message list", file=file, line=line,
                            field=field)
    if kind == "chat":
        return {"messages": record["chosen"]}
    chosen = record["chosen"]
    prompt = chosen[:-1] if len(chosen) > 1 else record.get("prompt")
    return {"prompt": prompt, "chosen": chosen, "rejected": record["rejected"]}


PRESETS: dict[str, Preset] = {
    "dolly": Preset(("chat",), _dolly),
    "alpaca": Preset(("chat",), _alpaca),
    "hh-rlhf": Preset(("preference", "chat"), _hh_rlhf),
    "ultrafeedback": Preset(("preference", "chat"), _ultrafeedback),
}
