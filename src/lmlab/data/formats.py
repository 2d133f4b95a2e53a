"""Row kinds and their validation.

Every row that enters lmlab passes through :func:`normalize_row`, which either returns the row in
its one canonical shape or raises :class:`~lmlab.errors.DataError` naming file, line and field
(``messages[1].content``), so a bad row is never silently trained on.

Canonical shapes (what the rest of lmlab can rely on):

- text:        ``{"text": str}``
- chat:        ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}``
- preference:  ``{"prompt": str | messages, "chosen": str, "rejected": str}``
- task:        ``{"prompt": str, "answer": str, ...}`` (extra keys kept for the task's checker)
- kto:         ``{"prompt": str | messages, "completion": str, "label": bool}``
"""

from __future__ import annotations

from typing import Any, Callable

from lmlab.errors import DataError

KINDS = ("text", "chat", "preference", "task", "kto")
ROLES = ("system", "user", "assistant")

# CSV cells are strings, so a kto label arrives as "true"/"0"; these are the spellings we accept.
_BOOL_WORDS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


class _Where:
    """Where a row came from; builds located errors."""

    def __init__(self, file: str, line: int):
        self.file, self.line = file, line

    def error(self, field: str | None, message: str) -> DataError:
        return DataError(message, file=self.file, line=self.line, field=field)


def normalize_row(row: dict, kind: str, *, file: str, line: int) -> dict:
    """Validate ``row`` as a ``kind`` row and return it in canonical shape (see module doc).

    Raises DataError located at ``file:line`` and naming the offending field.
    """
    if kind not in KINDS:
        raise DataError(f"unknown row kind {kind!r}; expected one of {', '.join(KINDS)}")
    where = _Where(file, line)
    if not isinstance(row, dict):
        raise where.error(None, f"expected a JSON object, got {_type_name(row)}")
    return _NORMALIZERS[kind](row, where)


# --- field helpers ------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _require(row: dict, field: str, where: _Where) -> Any:
    if field not in row or row[field] is None:
        have = ", ".join(map(repr, row)) or "none"
        raise where.error(field, f"missing (the row has fields: {have})")
    return row[field]


def _string(value: Any, field: str, where: _Where, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise where.error(field, f"expected a string, got {_type_name(value)} {value!r:.40}")
    if not allow_empty and not value.strip():
        raise where.error(field, "is empty")
    return value


def _messages(value: Any, field: str, where: _Where) -> list[dict]:
    """Validate a message list; returns fresh ``{"role", "content"}`` dicts (extra keys dropped)."""
    if not isinstance(value, list):
        raise where.error(field, f"expected a list of messages, got {_type_name(value)}")
    if not value:
        raise where.error(field, "is an empty message list")
    out = []
    for i, msg in enumerate(value):
        at = f"{field}[{i}]"
        if not isinstance(msg, dict):
            raise where.error(at, f"expected a message object, got {_type_name(msg)}")
        role = _string(_require(msg, "role", _Sub(where, at)), f"{at}.role", where)
        if role not in ROLES:
            raise where.error(f"{at}.role", f"unknown role {role!r}; expected one of "
                                            f"{', '.join(ROLES)}")
        # A system prompt may legitimately be empty; an empty user or assistant turn is a bug.
        content = _string(_require(msg, "content", _Sub(where, at)), f"{at}.content", where,
                          allow_empty=role == "system")
        out.append({"role": role, "content": content})
    return out


class _Sub(_Where):
    """A location whose field names are prefixed, for fields nested in a message."""

    def __init__(self, parent: _Where, prefix: str):
        super().__init__(parent.file, parent.line)
        self.prefix = prefix

    def error(self, field: str | None, message: str) -> DataError:
        return super().error(f"{self.prefix}.{field}" if field else self.prefix, message)


def _prompt(value: Any, field: str, where: _Where) -> str | list[dict]:
    """A prompt is a string (one user turn) or a message list."""
    if isinstance(value, list):
        return _messages(value, field, where)
    return _string(value, field, where)


def _reply(value: Any, field: str, where: _Where) -> str:
    """A reply is a string, or a message list whose last message is the assistant reply."""
    if isinstance(value, list):
        msgs = _messages(value, field, where)
        if msgs[-1]["role"] != "assistant":
            raise where.error(f"{field}[{len(msgs) - 1}].role",
                              "the last message of a reply must be the assistant's")
        return msgs[-1]["content"]
    return _string(value, field, where)


# --- one normalizer per kind --------------------------------------------------------------------


def _text(row: dict, where: _Where) -> dict:
    return {"text": _string(_require(row, "text", where), "text", where)}


def _chat(row: dict, where: _Where) -> dict:
    if "messages" in row and row["messages"] is not None:
        msgs = _messages(row["messages"], "messages", where)
    elif "prompt" in row or "completion" in row:
        msgs = _prompt_completion(row, where)
    else:
        raise where.error("messages", "missing: a chat row needs 'messages' or 'prompt' and "
                                      f"'completion' (the row has: {', '.join(map(repr, row))})")
    if not any(m["role"] == "assistant" for m in msgs):
        raise where.error("messages", "has no assistant turn, so there is nothing to train on")
    # Rendering "the messages before turn i plus a generation prompt" needs at least one
    # message before the first assistant turn (see chat.encode_chat).
    if msgs[0]["role"] == "assistant":
        raise where.error("messages[0].role", "a conversation cannot start with an assistant "
                                              "turn")
    return {"messages": msgs}


def _prompt_completion(row: dict, where: _Where) -> list[dict]:
    prompt = _prompt(_require(row, "prompt", where), "prompt", where)
    completion = _string(_require(row, "completion", where), "completion", where)
    msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    if row.get("system") is not None:
        msgs = [{"role": "system", "content": _string(row["system"], "system", where,
                                                      allow_empty=True)}] + msgs
    return msgs + [{"role": "assistant", "content": completion}]


def _preference(row: dict, where: _Where) -> dict:
    chosen = _reply(_require(row, "chosen", where), "chosen", where)
    rejected = _reply(_require(row, "rejected", where), "rejected", where)
    if chosen == rejected:
        raise where.error("rejected", "is identical to 'chosen', so the pair teaches nothing")
    return {"prompt": _preference_prompt(row, where), "chosen": chosen, "rejected": rejected}


def _preference_prompt(row: dict, where: _Where) -> str | list[dict]:
    """The prompt field, or - when absent - the conversation before the chosen reply."""
    if row.get("prompt") is None and isinstance(row.get("chosen"), list) \
            and len(row["chosen"]) > 1:
        return _messages(row["chosen"][:-1], "chosen", where)
    return _prompt(_require(row, "prompt", where), "prompt", where)


def _task(row: dict, where: _Where) -> dict:
    prompt = _string(_require(row, "prompt", where), "prompt", where)
    answer = _string(_require(row, "answer", where), "answer", where)
    return {**row, "prompt": prompt, "answer": answer}


def _kto(row: dict, where: _Where) -> dict:
    prompt = _prompt(_require(row, "prompt", where), "prompt", where)
    completion = _string(_require(row, "completion", where), "completion", where)
    return {"prompt": prompt, "completion": completion,
            "label": _label(_require(row, "label", where), where)}


def _label(value: Any, where: _Where) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.strip().lower()]
    raise where.error("label", f"expected a boolean (true = desirable), got {_type_name(value)} "
                               f"{value!r:.40}")


_NORMALIZERS: dict[str, Callable[[dict, _Where], dict]] = {
    "text": _text, "chat": _chat, "preference": _preference, "task": _task, "kto": _kto}
