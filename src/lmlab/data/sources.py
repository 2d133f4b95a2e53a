"""Reading rows from files, Hugging Face datasets and built-in tasks.

``load_rows`` is the one entry point: it reads raw records with their 1-based location, reshapes
them with an optional column mapping, and validates each with ``normalize_row``. A bad record
raises DataError at ``file:line``; with ``on_error="skip"`` it is skipped, counted, and reported
in one warning instead - never silently dropped.

Text files are read through ``lmlab.textfile``: a UTF-8 byte-order mark and CRLF line ends give
the same rows as plain UTF-8 with LF, and bytes that are not UTF-8 are a DataError naming the
file, line and byte. Without a mapping, a file in a public schema (Dolly, Alpaca, HH-RLHF,
UltraFeedback) is recognised by its first record's columns (``lmlab.data.presets``).

Line numbers: JSONL - the file line; CSV - the file line where the row ends (the header is
line 1); JSON (a list) and Parquet - the index + 1; a Hugging Face dataset - the index + 1.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from lmlab.data.formats import KINDS, normalize_row
from lmlab.data.presets import NEEDS, PRESETS, detect, detected_line, foreign, no_schema_message
from lmlab.errors import DataError
from lmlab.textfile import read_lines, read_text

__all__ = ["FILE_TYPES", "PRESETS", "Rows", "load_rows"]

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

    source: a ``.jsonl`` / ``.json`` / ``.csv`` / ``.parquet`` file, ``task:<name>[,<name>...]``
    (``?cot=1`` after the names: worked solutions, ``lmlab.data.tasks.cot``), or a Hugging Face
    dataset id ``org/name`` (``split`` picks its split; files have one split).
    mapping: ``{target_field: source_column}`` or a preset name (see ``PRESETS``); without one,
    a source whose first record fits a preset's columns instead of ``kind``'s is read with it.
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
        if not mapping:
            records, mapping = _auto_mapping(records, kind, source)
    reshape = _mapper(mapping, kind)
    return _validate(records, kind, reshape, limit, on_error, source, explain=not mapping)


def _auto_mapping(records: Iterator[tuple[str, int, object]], kind: str, source: str
                  ) -> tuple[Iterator[tuple[str, int, object]], str | None]:
    """(the same records, the preset their first record's columns fit, or None); a preset
    found is announced in one line."""
    head = []
    for item in records:  # up to and including the first record that parsed as an object
        head.append(item)
        if isinstance(item[2], dict):
            break
    records = itertools.chain(head, records)
    first = head[-1][2] if head and isinstance(head[-1][2], dict) else None
    name = detect(first, kind) if first is not None else None
    if name:
        from lmlab.common import print0  # lazy: torch is loaded by then in every stage

        print0(detected_line(name, first, source))
    return records, name


def _validate(records: Iterator[tuple[str, int, object]], kind: str,
              reshape: Callable[[dict, str, int], dict], limit: int | None, on_error: str,
              source: str, *, explain: bool = False) -> Rows:
    """Validated rows. ``explain``: a row (read without a mapping) in other columns than the
    kind's gets the message that lists its columns and the presets, not a bare 'missing'."""
    rows, errors = [], []
    for file, line, record in records:
        if limit is not None and len(rows) >= limit:
            break
        try:
            if isinstance(record, DataError):  # a record the reader could not even parse
                raise record
            if isinstance(record, dict):
                if explain and foreign(record, kind):
                    raise DataError(no_schema_message(record, kind), file=file, line=line,
                                    field=NEEDS[kind][1])
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
    for line_no, text in read_lines(file):
        if not text.strip():
            continue  # blank lines (a trailing newline, spacing) are not rows
        try:
            yield file, line_no, json.loads(text)
        except json.JSONDecodeError as err:
            yield file, line_no, DataError(f"not valid JSON ({err.msg} at column "
                                           f"{err.colno})", file=file, line=line_no)


def _json_records(file: str) -> Iterator[tuple[str, int, object]]:
    try:
        data = json.loads(read_text(file))
    except json.JSONDecodeError as err:
        raise DataError(f"not valid JSON ({err.msg} at column {err.colno})", file=file,
                        line=err.lineno) from None
    if not isinstance(data, list):
        raise DataError(f"a .json file must hold a list of row objects, got {type(data).__name__}"
                        " (use .jsonl for one object per line)", file=file, line=1)
    for i, record in enumerate(data):
        yield file, i + 1, record


def _csv_records(file: str) -> Iterator[tuple[str, int, object]]:
    # The decoded text (BOM dropped, line ends LF); newline="" leaves quoted newlines to csv.
    reader = csv.DictReader(io.StringIO(read_text(file), newline=""))
    try:
        for record in reader:
            line = reader.line_num  # the file line the row ends on (a quoted cell may span)
            if None in record:  # DictReader puts surplus cells under the key None
                yield file, line, DataError(f"{len(reader.fieldnames)} columns in the header but "
                                            f"{len(reader.fieldnames) + len(record[None])} cells "
                                            "in this row", file=file, line=line)
                continue
            yield file, line, record
    except csv.Error as err:  # e.g. a NUL byte, or a quote left open at the end of the file
        raise DataError(f"not valid CSV ({err})", file=file, line=reader.line_num) from None


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

    body, _, query = source.split(":", 1)[1].partition("?")
    names = [n.strip() for n in body.split(",") if n.strip()]
    make = task_rows
    if query:  # "task:add,sort?cot=1": options; cot = worked solutions (lmlab.data.tasks.cot)
        from lmlab.data.tasks.cot import cot_rows, split_source

        make = cot_rows if split_source(source)[1].get("cot") else task_rows
    if not names:
        raise DataError("no task names after 'task:'", file=source)
    for i, record in enumerate(make(names, kind, split, limit, 0)):
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
