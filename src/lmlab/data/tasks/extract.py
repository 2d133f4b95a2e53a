"""Reading a model's completion: the one place that decides what a checker looks at.

Every checker first calls ``clean``: the completion is cut at the first end-of-turn marker (so
``"936<|im_end|>\\n<|im_start|>user..."`` is read as ``"936"``) and stripped of whitespace.
Then each task extracts its value with one of the functions below. The checkers are strict
about WHERE the answer is: ``stated_numbers`` and ``stated_word`` read only the final line, and
only when that line is the answer alone or ends in it right after an answer cue ("The answer is
936.", "347 + 589 = 936", "Sorted: 7, 19, 42, 83"). A reply that merely mentions the right value
("856 is a multiple of 18, and 865 is not.") states no answer. ``last_numbers`` (the lenient
last-number rule, as GSM8K graders use) stays for the gsm8k eval set; ``stated_final_number``
is its strict twin (set gsm8k-strict).
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
_NUM = _NUMBER.pattern
# The final line's trailing answer: optional bracket, one or more numbers separated by commas,
# spaces or "and", optional bracket, optional one unit word ("420 minutes"); ``lead`` is the text
# before it. The lazy lead makes the list as long as possible: "7, 19, 42, 83, 90" is 5 numbers.
_TAIL_NUMBERS = re.compile(rf"^(?P<lead>.*?)[\[(]?(?P<nums>{_NUM}(?:\s*(?:,|\band\b)?\s*{_NUM})*)"
                           r"[\])]?(?:\s+[A-Za-z]+)?$", re.DOTALL)
_TAIL_WORD = re.compile(r"^(?P<lead>.*?)(?P<word>[A-Za-z]+)$", re.DOTALL)
# What may stand right before the answer on its line.
_CUE = re.compile(r"(?:=|:|->|→|\b(?:is|are|answer|equals))$", re.IGNORECASE)
_MARKUP = "*`_$"
_END_PUNCT = " \t.!;'\""
_FENCE = re.compile(r"^```[A-Za-z]*\s*(.*?)\s*```$", re.DOTALL)


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


def final_line(completion: str) -> str:
    """The last non-empty line of the cleaned completion, without markdown emphasis, quotes
    or final punctuation ("**936**." -> "936")."""
    lines = [ln for ln in clean(completion).splitlines() if ln.strip()]
    line = lines[-1] if lines else ""
    for ch in _MARKUP:
        line = line.replace(ch, "")
    return line.strip().strip(_END_PUNCT)


def _states(lead: str) -> bool:
    """The text before the answer on the final line: nothing, or ending in an answer cue."""
    lead = lead.rstrip().rstrip("'\"").rstrip()
    return not lead or bool(_CUE.search(lead))


def stated_numbers(completion: str) -> list[float] | None:
    """The numbers the final line states as the answer, or None when it states none.

    "936", "The answer is 936.", "347 + 589 = 936", "[7, 19, 42, 83]", "420 minutes" state
    numbers; "936 or 937" (lead "936 or"), "482 is larger than 428" and "865 is not." do not.
    """
    m = _TAIL_NUMBERS.match(final_line(completion))
    if m is None or not _states(m.group("lead")):
        return None
    return numbers(m.group("nums"))


def stated_final_number(completion: str) -> float | None:
    """The one number the final line states (``stated_numbers``), or GSM8K's own answer
    line "#### 72"; None otherwise ("#### 72\nI hope this helps", "72 or 73" state none)."""
    m = re.fullmatch(rf"#+\s*(?P<num>{_NUM})", final_line(completion))
    if m:
        return numbers(m.group("num"))[0]
    found = stated_numbers(completion)
    return found[0] if found and len(found) == 1 else None


def stated_word(completion: str) -> str | None:
    """The word the final line states as the answer (lower-cased), or None: "ilomab",
    "'Ilomab'.", "The reversed word is ilomab" state "ilomab"; "ilomab or bamoli" states none."""
    m = _TAIL_WORD.match(final_line(completion))
    if m is None or not _states(m.group("lead")):
        return None
    return m.group("word").lower()


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
