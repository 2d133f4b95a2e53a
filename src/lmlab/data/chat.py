"""Chat templates and loss masks: rows -> token ids and labels.

Labels are the token ids that carry loss and -100 everywhere else; the loss shifts them (position
t predicts label t+1), so ``labels`` always has the length of ``input_ids``.

Assistant spans are found without knowing the template: for each assistant turn i we render
``messages[:i]`` with the generation prompt and ``messages[:i+1]``; the tokens between the two are
the reply plus the template's end-of-turn. Each rendering must be a token prefix of the next (and
of the whole conversation), otherwise the template rewrites history (some strip earlier reasoning)
and no mask found this way would be right, so we refuse.
"""

from __future__ import annotations

from typing import Callable

from lmlab.errors import DataError

IGNORE = -100
TRAIN_ON = ("assistant", "last", "all")
ON_LONG = ("error", "skip", "truncate")


class SequenceTooLong(DataError):
    """An encoded row is longer than ``max_len``; callers decide to skip or truncate."""

    def __init__(self, length: int, max_len: int, where: str = ""):
        self.length, self.max_len = length, max_len
        super().__init__(f"{where}{length} tokens, longer than max_len={max_len} (raise max_len, "
                         "or set on_long=skip or on_long=truncate)")


# --- rendering ----------------------------------------------------------------------------------


def _render(tokenizer, messages: list[dict], generation_prompt: bool) -> list[int]:
    """Token ids of ``messages`` through the tokenizer's chat template."""
    text = tokenizer.apply_chat_template(messages, tokenize=False,
                                         add_generation_prompt=generation_prompt)
    # The template already wrote any BOS/role tokens; adding special tokens again would double BOS.
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _special_ids(tokenizer) -> set[int]:
    ids = set(tokenizer.all_special_ids)
    ids.update(i for i, tok in tokenizer.added_tokens_decoder.items() if tok.special)
    return ids


def _is_prefix(short: list[int], long: list[int]) -> bool:
    return long[:len(short)] == short


def _turn_end(ids: list[int], start: int, special: set[int]) -> int:
    """End (exclusive) of the trained part of an assistant turn that starts at ``start``.

    The turn runs to the end of ``ids``; we keep the reply and its last special token (the
    end-of-turn, e.g. ``<|im_end|>``) and drop what the template adds after it (a newline): the
    model must learn to stop, not to write the separator the next turn's header already has.
    """
    for j in range(len(ids) - 1, start - 1, -1):
        if ids[j] in special:
            return j + 1
    return len(ids)


def assistant_spans(tokenizer, messages: list[dict]) -> tuple[list[int], list[tuple[int, int]]]:
    """The conversation's token ids and one ``(start, end)`` span per assistant turn.

    Raises DataError when the chat template is not prefix-stable.
    """
    full = _render(tokenizer, messages, False)
    special = _special_ids(tokenizer)
    spans = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], True)
        after = _render(tokenizer, messages[:i + 1], False)
        if not (_is_prefix(before, after) and _is_prefix(after, full)):
            raise DataError(f"the chat template of {type(tokenizer).__name__} "
                            f"({getattr(tokenizer, 'name_or_path', '?')}) is not prefix-stable at "
                            f"message {i}: rendering the conversation up to a turn is not a token "
                            "prefix of rendering it further, so assistant spans cannot be found "
                            "(use a template that renders past turns unchanged)")
        spans.append((len(before), _turn_end(after, len(before), special)))
    return full, spans


# --- encoders -----------------------------------------------------------------------------------


def _chat_example(tokenizer, messages: list[dict], train_on: str = "assistant") -> dict:
    """input_ids (T,) and labels (T,) for a conversation, without a length limit."""
    if train_on not in TRAIN_ON:
        raise DataError(f"train_on must be one of {', '.join(TRAIN_ON)}, got {train_on!r}")
    ids, spans = assistant_spans(tokenizer, messages)
    if train_on == "all":
        return {"input_ids": ids, "labels": list(ids)}
    if train_on == "last":
        spans = spans[-1:]
    labels = [IGNORE] * len(ids)
    for start, end in spans:
        labels[start:end] = ids[start:end]
    return {"input_ids": ids, "labels": labels}


def _check_len(example: dict, max_len: int) -> dict:
    length = _length(example)
    if length > max_len:
        raise SequenceTooLong(length, max_len)
    return example


def encode_chat(tokenizer, messages: list[dict], max_len: int, *, train_on: str = "assistant"
                ) -> dict:
    """Render a conversation; loss on assistant turns (``train_on``: assistant | last | all).

    Returns ``{"input_ids": list[int] (T,), "labels": list[int] (T,)}``; labels hold each trained
    assistant turn's content and end-of-turn token, -100 elsewhere. Raises SequenceTooLong when
    T > max_len.
    """
    return _check_len(_chat_example(tokenizer, messages, train_on), max_len)


def encode_prompt(tokenizer, prompt: str | list[dict]) -> list[int]:
    """Token ids of a prompt followed by the assistant generation prompt (for generation)."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    return _render(tokenizer, messages, True)


def _text_example(tokenizer, text: str) -> dict:
    ids = tokenizer(text)["input_ids"]  # special tokens on: a tokenizer that wants BOS gets it
    if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
        ids = ids + [tokenizer.eos_token_id]  # so the model learns where documents end
    return {"input_ids": ids, "labels": list(ids)}


def encode_text(tokenizer, text: str, max_len: int) -> dict:
    """Plain text with EOS appended; every token is trained (labels == input_ids)."""
    return _check_len(_text_example(tokenizer, text), max_len)


def _as_messages(prompt: str | list[dict]) -> list[dict]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def _preference_example(tokenizer, row: dict) -> dict:
    out = {}
    for side in ("chosen", "rejected"):
        msgs = _as_messages(row["prompt"]) + [{"role": "assistant", "content": row[side]}]
        ex = _chat_example(tokenizer, msgs, "last")  # the prompt, even multi-turn, is masked
        out[f"{side}_input_ids"], out[f"{side}_labels"] = ex["input_ids"], ex["labels"]
    return out


def encode_preference(tokenizer, row: dict, max_len: int) -> dict:
    """A preference row -> chosen/rejected input_ids and labels (prompt tokens are -100)."""
    return _check_len(_preference_example(tokenizer, row), max_len)


def _kto_example(tokenizer, row: dict, train_on: str) -> dict:
    msgs = _as_messages(row["prompt"]) + [{"role": "assistant", "content": row["completion"]}]
    return {**_chat_example(tokenizer, msgs, "last"), "label": row["label"]}


def _task_example(tokenizer, row: dict, train_on: str) -> dict:
    # Supervised training on a task: the answer is the assistant reply to the prompt.
    msgs = [{"role": "user", "content": row["prompt"]},
            {"role": "assistant", "content": row["answer"]}]
    return _chat_example(tokenizer, msgs, train_on)


_ENCODERS: dict[str, Callable[[object, dict, str], dict]] = {
    "text": lambda tok, row, train_on: _text_example(tok, row["text"]),
    "chat": lambda tok, row, train_on: _chat_example(tok, row["messages"], train_on),
    "task": _task_example,
    "preference": lambda tok, row, train_on: _preference_example(tok, row),
    "kto": _kto_example,
}


# --- many rows ----------------------------------------------------------------------------------


def _sequence_keys(example: dict) -> list[tuple[str, str]]:
    """(input_ids key, labels key) pairs: one for most kinds, chosen/rejected for preference."""
    return [(k, k.replace("input_ids", "labels")) for k in example if k.endswith("input_ids")]


def _length(example: dict) -> int:
    return max(len(example[ids]) for ids, _ in _sequence_keys(example))


def _trained(example: dict) -> int:
    # Label 0 is never predicted (nothing precedes it), matching the loss's shift.
    return sum(sum(1 for x in example[lab][1:] if x != IGNORE)
               for _, lab in _sequence_keys(example))


def _truncate(example: dict, max_len: int) -> dict:
    out = dict(example)
    for ids, lab in _sequence_keys(example):
        out[ids], out[lab] = example[ids][:max_len], example[lab][:max_len]
    return out


def encode_rows(tokenizer, rows: list[dict], kind: str, max_len: int, *, on_long: str = "error",
                train_on: str = "assistant") -> tuple[list[dict], dict]:
    """Encode normalized rows of ``kind``; returns (examples, stats).

    on_long: "error" raises SequenceTooLong naming the row index; "skip" drops and counts the
    row; "truncate" keeps the first max_len tokens (a row left with no trained token is skipped).
    stats: rows, skipped_long, truncated, tokens (all input ids), trained_tokens (after shift).
    """
    if kind not in _ENCODERS:
        raise DataError(f"unknown row kind {kind!r}; expected one of {', '.join(_ENCODERS)}")
    if on_long not in ON_LONG:
        raise DataError(f"on_long must be one of {', '.join(ON_LONG)}, got {on_long!r}")
    stats = {"rows": len(rows), "skipped_long": 0, "truncated": 0, "tokens": 0,
             "trained_tokens": 0}
    examples = []
    for i, row in enumerate(rows):
        ex = _ENCODERS[kind](tokenizer, row, train_on)
        if _length(ex) > max_len:
            if on_long == "error":
                raise SequenceTooLong(_length(ex), max_len, where=f"row {i} (0-based): ")
            if on_long == "truncate":
                ex = _truncate(ex, max_len)
            if on_long == "skip" or _trained(ex) == 0:
                stats["skipped_long"] += 1
                continue
            stats["truncated"] += 1
        stats["tokens"] += sum(len(ex[ids]) for ids, _ in _sequence_keys(ex))
        stats["trained_tokens"] += _trained(ex)
        examples.append(ex)
    return examples, stats
