"""Public data schemas: the mapping presets, and telling them apart by their columns.

A preset turns one raw record of a public dataset into a row of the kinds it names. A file passed
without ``mapping=`` whose first record lacks the kind's own fields (``own_fields``) but fits
exactly one preset's columns (``detect``) is read through that preset; a file that fits none gets
an error listing the columns it has and the presets that exist (``no_schema_message``). A record
with the kind's own fields is never re-mapped.

| preset | dataset | columns it is recognised by |
|---|---|---|
| ``dolly`` | databricks-dolly-15k | instruction, response (context, category) |
| ``alpaca`` | tatsu-lab/alpaca | instruction, output (input) |
| ``hh-rlhf`` | Anthropic/hh-rlhf | chosen, rejected: "\\n\\nHuman: ..." transcripts |
| ``ultrafeedback`` | HuggingFaceH4/ultrafeedback_binarized | chosen, rejected: message lists |

Pure functions: no I/O, nothing printed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from lmlab.errors import DataError


@dataclass(frozen=True)
class Preset:
    title: str  # as people write the dataset's name
    kinds: tuple[str, ...]  # the row kinds it makes
    apply: Callable[[dict, str, str, int], dict]  # (record, kind, file, line) -> row
    fits: Callable[[dict], bool]  # whether a raw record has this schema's columns
    columns: tuple[str, ...]  # the columns it reads, for messages


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


def _has(record: dict, *columns: str) -> bool:
    return all(record.get(c) is not None for c in columns)


def _is_transcript(value: object) -> bool:
    return isinstance(value, str) and value.lstrip().startswith("Human:")


PRESETS: dict[str, Preset] = {
    "dolly": Preset("Dolly", ("chat",), _dolly, lambda r: _has(r, "instruction", "response"),
                    ("instruction", "context", "response")),
    "alpaca": Preset("Alpaca", ("chat",), _alpaca, lambda r: _has(r, "instruction", "output"),
                     ("instruction", "input", "output")),
    "hh-rlhf": Preset("HH-RLHF", ("preference", "chat"), _hh_rlhf,
                      lambda r: _is_transcript(r.get("chosen")) and _is_transcript(
                          r.get("rejected")), ("chosen", "rejected")),
    "ultrafeedback": Preset("UltraFeedback", ("preference", "chat"), _ultrafeedback,
                            lambda r: isinstance(r.get("chosen"), list)
                            and isinstance(r.get("rejected"), list),
                            ("prompt", "chosen", "rejected")),
}

# What each kind needs, in words, and the field a missing-fields error names.
NEEDS = {"text": ("'text'", "text"),
         "chat": ("'messages', or 'prompt' and 'completion'", "messages"),
         "preference": ("'prompt', 'chosen' and 'rejected'", "prompt"),
         "task": ("'prompt' and 'answer'", "prompt"),
         "kto": ("'prompt', 'completion' and 'label'", "prompt")}


def own_fields(record: dict, kind: str) -> bool:
    """Whether ``record`` already speaks ``kind``'s language, so no preset may re-map it: it has
    the field that only that kind uses (a chat row's messages or completion, a text row's text,
    ...), or - for preference rows - chosen as a message list (the prompt then is the turns
    before the reply)."""
    if kind == "text":
        return "text" in record
    if kind == "chat":
        return "messages" in record or "completion" in record
    if kind == "preference":
        return "prompt" in record or isinstance(record.get("chosen"), list)
    if kind == "kto":
        return "prompt" in record or "completion" in record
    return "prompt" in record  # task


def foreign(record: dict, kind: str) -> bool:
    """Whether a record that failed as a ``kind`` row deserves ``no_schema_message``: it lacks
    the kind's own fields and has columns the kind does not use (a row that merely forgot a
    field, like a chat row with a prompt and no completion, gets the plain 'missing')."""
    return not own_fields(record, kind) and bool(_spare(record, kind))


def matches(record: dict) -> list[str]:
    """Every preset whose columns ``record`` has, in ``PRESETS`` order."""
    return [name for name, p in PRESETS.items() if p.fits(record)]


def detect(record: dict, kind: str) -> str | None:
    """The preset to read ``record`` (a file's first record) as ``kind`` rows with, or None: a
    record with the kind's own fields, one that fits no preset for that kind, or fits more than
    one, is not re-mapped (the row's own validation, or ``no_schema_message``, then says why)."""
    if own_fields(record, kind):
        return None
    fit = [name for name in matches(record) if kind in PRESETS[name].kinds]
    return fit[0] if len(fit) == 1 else None


def detected_line(name: str, record: dict, file: str) -> str:
    """The one line that says which preset a file is read with."""
    p = PRESETS[name]
    cols = ", ".join(c for c in p.columns if c in record)
    return f"[lmlab] {file} looks like {p.title} ({cols}): using mapping={name}"


def no_schema_message(record: dict, kind: str) -> str:
    """Why a record without ``kind``'s fields could not be read, and what would read it: the
    columns it has, the presets there are (and which of them it fits, if for another kind), and
    how to name columns."""
    needs, _ = NEEDS[kind]
    cols = ", ".join(map(repr, record)) or "none"
    fit = matches(record)
    if len(fit) > 1:
        why = (f"its columns fit more than one preset ({', '.join(fit)}): pick one with "
               f"mapping={fit[0]}")
    elif fit:
        p = PRESETS[fit[0]]
        why = (f"it looks like {p.title} (mapping={fit[0]}), which makes "
               f"{' or '.join(p.kinds)} rows, not {kind} rows")
    else:
        presets = ", ".join(f"{n} ({', '.join(p.columns)})" for n, p in PRESETS.items())
        why = f"its columns match no known schema; the presets are {presets}"
    pairs = _example(record, kind)
    cli = " ".join(f"mapping.{f}={c}" for f, c in pairs)
    yaml = ", ".join(f"{f}: {c}" for f, c in pairs)
    return (f"missing: a {kind} row needs {needs}, and this row has columns {cols}; {why}; "
            f"or name your columns with mapping, e.g. {cli} on the command line "
            f"(mapping: {{{yaml}}} in YAML)")


_FIELDS = {"text": ("text",), "chat": ("prompt", "completion"),
           "preference": ("prompt", "chosen", "rejected"), "task": ("prompt", "answer"),
           "kto": ("prompt", "completion", "label")}


def _example(record: dict, kind: str) -> list[tuple[str, str]]:
    """(field, column) pairs for the example: the fields the record lacks, in order, each with
    the next column of the record that the kind does not use (at least one pair)."""
    fields = _FIELDS[kind]
    missing = [f for f in fields if f not in record] or list(fields[:1])
    return list(zip(missing, _spare(record, kind) or ["question"], strict=False))


def _spare(record: dict, kind: str) -> list[str]:
    """The record's columns that no ``kind`` row uses."""
    known = _FIELDS[kind] + (("messages", "system") if kind == "chat" else ())
    return [c for c in record if c not in known]
