"""Tasks about text and output format: reverse (spelling) and json (a required reply format)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from lmlab.data.tasks.arith import near_miss  # the same slips as the number tasks
from lmlab.data.tasks.extract import json_object, stated_word
from lmlab.data.tasks.phrasing import Phrasings, check_variant

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


def pseudo_word(rng: random.Random, syllables: tuple[int, int] = (2, 3)) -> str:
    """A pronounceable made-up word of 2-3 (``syllables``) consonant-vowel syllables
    ("bamoli"), never a palindrome, so its reverse always differs from it."""
    while True:
        word = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS)
                       for _ in range(rng.randint(*syllables)))
        if word != word[::-1]:
            return word


REVERSE_PHRASES = Phrasings(
    train_frames=("Reverse the letters of the word '{w}'.", "Spell '{w}' backwards.",
                  "Write the word '{w}' in reverse order."),
    eval_frames=("What is '{w}' read from right to left?",
                 "Flip the order of the letters in '{w}'."),
    train_instructions=("Reply with the reversed word only.", "Give only the reversed word."),
    eval_instructions=("Answer with just that word.", "Write nothing else but the result."))
RANGE_SYLLABLES = (4, 5)  # out of range: longer made-up words (training: 2-3 syllables)


@dataclass(frozen=True)
class ReverseTask:
    """Spell a made-up word backwards. check(): the final line of the cleaned reply must state
    the reversed word (alone, or after an answer cue), case-insensitively: "ilomab", "'Ilomab'."
    and "The reversed word is ilomab" are correct; "ilomba", "i-l-o-m-a-b", "ilomab or bamoli"
    and "ilomab\nI hope this helps" are not.
    """

    name: str = "reverse"
    description: str = "reverse the letters of a made-up word, e.g. bamoli -> ilomab"
    variants: tuple[str, ...] = ("heldout", "range")

    def example(self, rng: random.Random, variant: str = "train") -> dict:
        check_variant(variant)
        word = pseudo_word(rng, RANGE_SYLLABLES if variant == "range" else (2, 3))
        return {"prompt": REVERSE_PHRASES.prompt(rng, variant, w=word), "answer": word[::-1]}

    def check(self, completion: str, answer: str) -> bool:
        return stated_word(completion) == answer.strip().lower()

    def reward(self, completion: str, answer: str) -> float:
        return 1.0 if self.check(completion, answer) else 0.0

    def wrong_answer(self, example: dict, rng: random.Random) -> str:
        answer = example["answer"]
        pairs = [i for i in range(len(answer) - 1) if answer[i] != answer[i + 1]]
        if rng.random() < 0.5:  # not reversed at all
            return answer[::-1]
        i = rng.choice(pairs)  # a non-palindrome of >= 4 letters always has a differing pair
        return answer[:i] + answer[i + 1] + answer[i] + answer[i + 2:]  # two letters swapped


JSON_PHRASES = Phrasings(
    train_frames=("What is {a} {op} {b}?", "Compute {a} {op} {b}."),
    eval_frames=("Work out {a} {op} {b}.", "Calculate {a} {op} {b} for me."),
    train_instructions=('Reply only with JSON like {"answer": 0}.',
                        'Answer in JSON: {"answer": <number>}.'),
    eval_instructions=('Respond with a JSON object such as {"answer": 5} and nothing else.',
                       'Return just {"answer": N} as JSON.'))
FORMAT_CREDIT = 0.1  # reward for a well-formed reply with the wrong value (see JsonTask)


@dataclass(frozen=True)
class JsonTask:
    """Easy arithmetic, answered in a required format: a JSON object with one key "answer".

    check(): the cleaned reply (a ```json fence around it allowed) must parse as a JSON object
    whose only key is "answer" and whose value is a JSON number equal to the result:
    '{"answer": 71}' and '{"answer":71.0}' are correct; '71', 'Answer: {"answer": 71}',
    '{"answer": "71"}' and '{"answer": 71, "why": "..."}' are not.
    reward(): 1.0 when correct, FORMAT_CREDIT (0.1) when the reply has the right format but the
    wrong number - a gradient towards the format for RL when the base model never gets it all
    right - else 0.0.
    """

    name: str = "json"
    description: str = 'two-digit +/- answered as JSON, e.g. 23 + 48 -> {"answer": 71}'
    variants: tuple[str, ...] = ("heldout", "range")

    def example(self, rng: random.Random, variant: str = "train") -> dict:
        check_variant(variant)
        lo, hi = (100, 999) if variant == "range" else (10, 99)  # out of range: three digits
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        op = rng.choice("+-")
        if op == "-" and a < b:
            a, b = b, a
        value = a + b if op == "+" else a - b
        return {"prompt": JSON_PHRASES.prompt(rng, variant, a=a, op=op, b=b),
                "answer": json.dumps({"answer": value})}

    def check(self, completion: str, answer: str) -> bool:
        got, want = _json_value(completion), _json_value(answer)
        return got is not None and got == want

    def reward(self, completion: str, answer: str) -> float:
        if self.check(completion, answer):
            return 1.0
        return FORMAT_CREDIT if _json_value(completion) is not None else 0.0

    def wrong_answer(self, example: dict, rng: random.Random) -> str:
        value = int(_json_value(example["answer"]))
        return json.dumps({"answer": near_miss(value, rng)})


def _json_value(completion: str) -> float | None:
    """The number under "answer" when the reply is exactly {"answer": <number>}, else None."""
    obj = json_object(completion)
    if obj is None or set(obj) != {"answer"}:
        return None
    value = obj["answer"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


REVERSE = ReverseTask()
JSON = JsonTask()
