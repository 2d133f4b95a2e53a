"""Reading a model's completion: the one place that decides what a checker looks at.

Every checker first calls ``clean``: the completion is cut at the first end-of-turn marker (so
``"936<|im_end|>\\n<|im_start|>user..."`` is read as ``"936"``) and stripped of whitespace.
Then each task extracts its value with one of the functions below.
"""

from __future__ import annotations

import json
import re

# End-of-turn / end-of-text markers of common chat templates; text after the first one is not
# part of the reply (a decode with skip_special_tokens=False, or a model that runs on).
END_MARKERS = ("<|im_end|>", "<|endoftext|>", "<|im_start|>", "</s>", "<|eot_id|>", "<|end|>",
               "<end_of_turn>", "<|end_of_text|>")

# An integer, optionally negative, optionally with thousands commas ("12,000") or a decimal
# part ("936.0"). A minus sign counts only when it does not follow a word character, so
# "347-289" reads as 347 and 289, while "= -58" reads as -58.
_NUMBER = re.compile(r"(?:(?<![\w.])-)?\d+(?:,\d{3})*(?:\.\d+)?")
_WORD = re.compile(r"[A-Za-z]+")
_FENCE = re.compile(r"^```[A-Za-z]*\s*(.*?)\s*```$", re.S)


def clean(completion: str) -> str:
    """The reply before the first end-of-turn marker, without surrounding whitespace."""
    cut = len(completion)
    for marker in END_MARKERS:
        i = completion.find(marker)
        if i != -1:
            cut = min(cut, i)
    return completion[:cut].strip()


def numbers(text: str) -> list[float]:
    """All numbers in ``text`` in order, as floats ("12,000" -> 12000.0, "-3" -> -3.0)."""
    return [float(m.replace(",", "")) for m in _NUMBER.findall(text)]


def last_numbers(completion: str, k: int) -> list[float] | None:
    """The last ``k`` numbers of the cleaned completion, or None when it holds fewer."""
    found = numbers(clean(completion))
    return found[-k:] if len(found) >= k else None


def last_word(completion: str) -> str | None:
    """The last run of ASCII letters in the cleaned completion, lower-cased, or None."""
    words = _WORD.findall(clean(completion))
    return words[-1].lower() if words else None


def json_object(completion: str) -> dict | None:
    """The cleaned completion parsed as one JSON object (a ```json fence around it is allowed).

    None when the reply is anything else: text before or after the object, a list, invalid JSON.
    """
    text = clean(completion)
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
