"""Training rows for ``lmlab embed``: pairs (supervised) or sentences (SimCSE), tokenized once,
and the collate that makes one padded batch of anchors then candidates.

Sources:
  ``collection:<name>``       the training pairs of a test collection (held-out queries and
                              their documents are never among them; see collections.py)
  a .jsonl/.json/.csv/.parquet file with ``{anchor, positive}`` rows, optionally
                              ``negative`` (a hard negative: every row or none) - or, for
                              SimCSE, ``{text}`` rows
  a .txt file                 SimCSE: one sentence a line
"""

from __future__ import annotations

import torch

from lmlab.errors import DataError


def read_rows(source: str, objective: str, *, limit: int | None = None,
              on_error: str = "raise") -> list[dict]:
    """Validated rows: ``{anchor, positive[, negative]}`` (mnrl) or ``{text}`` (simcse)."""
    if source.startswith("collection:"):
        from lmlab.embed.collections import load_collection

        pairs = load_collection(source.split(":", 1)[1]).train_pairs
        rows = [{"text": p["anchor"]} for p in pairs] if objective == "simcse" else pairs
        return rows[:limit] if limit else rows
    if source.endswith(".txt"):
        from lmlab.textfile import read_lines

        if objective != "simcse":
            raise DataError("a .txt file (one sentence a line) is SimCSE data; use "
                            "objective=simcse, or a .jsonl of {anchor, positive} pairs",
                            file=source)
        rows = [{"text": t.strip()} for _, t in read_lines(source) if t.strip()]
        if not rows:
            raise DataError("no sentences (the file holds no non-blank line)", file=source)
        return rows[:limit] if limit else rows
    return _file_rows(source, objective, limit, on_error)


def _file_rows(source: str, objective: str, limit: int | None, on_error: str) -> list[dict]:
    from lmlab.data.sources import _records

    rows, errors, first = [], [], None
    for file, line, rec in _records(source, "train"):
        if limit and len(rows) >= limit:
            break
        try:
            row = _check(rec, objective, file, line)
            if first is None:
                first = (file, line, "negative" in row)
            elif ("negative" in row) != first[2] and objective == "mnrl":
                has = "has none" if first[2] else "has one"
                raise DataError(f"line {first[1]} {has}: give a hard negative in every row or "
                                "in none", file=file, line=line, field="negative")
            rows.append(row)
        except DataError as e:
            if on_error == "raise":
                raise
            errors.append(str(e))
    if errors:
        import warnings

        warnings.warn(f"skipped {len(errors)} rows of {source} (on_error=skip); the first: "
                      f"{errors[0]}", UserWarning, stacklevel=3)
    if not rows:
        raise DataError("no usable rows" + (f"; the first error: {errors[0]}" if errors else ""),
                        file=source)
    return rows


def _check(rec, objective: str, file: str, line: int) -> dict:
    if isinstance(rec, DataError):
        raise rec
    if not isinstance(rec, dict):
        raise DataError(f"expected an object with {_fields(objective)}, got "
                        f"{type(rec).__name__}", file=file, line=line)
    need = ("text",) if objective == "simcse" and "text" in rec else ("anchor", "positive") \
        if objective == "mnrl" else ("anchor",)
    row = {}
    for f in need + (("negative",) if objective == "mnrl" and "negative" in rec else ()):
        v = rec.get(f)
        if not isinstance(v, str) or not v.strip():
            got = "missing" if f not in rec else f"a {type(v).__name__}" if not isinstance(
                v, str) else "empty"
            raise DataError(f"expected a non-empty string ({_fields(objective)} rows), got "
                            f"{got}; the row has {', '.join(map(str, rec)) or 'no fields'}",
                            file=file, line=line, field=f)
        row[f] = v
    return {"text": row.get("text", row.get("anchor"))} if objective == "simcse" else row


def _fields(objective: str) -> str:
    return "{text}" if objective == "simcse" else "{anchor, positive[, negative]}"


def encode_rows(tokenizer, rows: list[dict], max_len: int) -> tuple[list[dict], int]:
    """(examples of token id lists, how many texts were truncated to max_len)."""
    from lmlab.embed.model import tokenize

    keys = [k for k in ("text", "anchor", "positive", "negative") if k in rows[0]]
    cols, cut = {}, 0
    for k in keys:
        cols[k], n = tokenize(tokenizer, [r[k] for r in rows], max_len, on_long="quiet")
        cut += n
    return [{k: cols[k][i] for k in keys} for i in range(len(rows))], cut


def collate(examples: list[dict], pad_id: int) -> dict:
    """One padded batch: rows 0..B-1 are the anchors, then the candidates (the B positives,
    then the B hard negatives when there are some). SimCSE: the B texts only (the objective
    encodes them twice). ``anchors`` = B."""
    from lmlab.embed.model import pad_batch

    if "text" in examples[0]:
        rows = [e["text"] for e in examples]
    else:
        rows = [e["anchor"] for e in examples] + [e["positive"] for e in examples]
        if "negative" in examples[0]:
            rows += [e["negative"] for e in examples]
    batch = pad_batch(rows, pad_id)
    batch["anchors"] = len(examples)
    return batch


def trim(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows cut to their own longest sequence (a part of a batch padded for a longer part)."""
    width = int(mask.sum(dim=1).max())
    return ids[:, :width], mask[:, :width]


def lengths(examples: list[dict]) -> list[int]:
    return [sum(len(v) for v in e.values()) for e in examples]
