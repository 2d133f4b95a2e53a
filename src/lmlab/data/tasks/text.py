"""Tasks about text and output format: reverse (spelling) and json (a required reply format)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from lmlab.data.tasks.arith import near_miss  # the same slips as the number tasks
from lmlab.data.tasks.extract import json_object, last_word

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


def pseudo_word(rng: random.Random) -> str:
    """A pronounceable made-up word of 2-3 consonant-vowel syllables ("bamoli"), never a
    palindrome, so its reverse always differs from it."""
    while True:
        word = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS)
                       for _ in range(rng.randint(2, 3)))
        if word != word[::-1]:
            return word


@dataclass(frozen=True)
class ReverseTask:
    """Spell a made-up word backwards. check(): the last run of letters in the cleaned reply,
    compared case-insensitively, must be the reversed word: "ilomab", "'Ilomab'." and "The
    reversed word is ilomab" are correct; "ilomba", "i-l-o-m-a-b" and "ilomab or bamoli" are not.
    """

    name: str = "reverse"
    description: str = "reverse the letters of a made-up word, e.g. bamoli -> ilomab"

    def example(self, rng: random.Random) -> dict:
        word = pseudo_word(rng)
        return {"prompt": f"Reverse the letters of the word '{word}'. "
                          "Reply with the reversed word only.", "answer": word[::-1]}

    def check(self, completion: str, answer: str) -> bool:
        return last_word(completion) == answer.strip().lower()

    def reward(self, completion: str, answer: str) -> float:
        return 1.0 if self.check(completion, answer) else 0.0

    def wrong_answer(self, example: dict, rng: random.Random) -> str:
        answer = example["answer"]
        pairs = [i for i in range(len(answer) - 1) if answer[i] != answer[i + 1]]
        if rng.random() < 0.5:  # not reversed at all
            return answer[::-1]
        i = rng.choice(pairs)  # a non-palindrome of >= 4 letters always has a differing pair
        return answer[:i] + answer[i + 1] + answer[i] + answer[i + 2:]  # two letters swapped


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

    def example(self, rng: random.Random) -> dict:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        op = rng.choice("+-")
        if op == "-" and a < b:
            a, b = b, a
        value = a + b if op == "+" else a - b
        return {"prompt": f'What is {a} {op} {b}? Reply only with JSON like {{"answer": 0}}.',
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
