"""Tasks whose answer is one or more integers: add, sub, compare, convert, sort.

All share one checker (``NumberTask.check``): the completion is cleaned (cut at the first
end-of-turn marker, stripped), every number in it is read ("12,000" and "936.0" read as
12000 and 936), and the LAST k numbers must equal the k numbers of the answer, in order.
So "936", " 936 <|im_end|>", "The answer is 936." and "347 + 589 = 936" are correct for 936;
"963", "936 or 937" and "936, I think. Check: 937" are not. Reading the last numbers (as
GSM8K graders do) accepts a worked line ending in the answer, and cannot be gamed by listing
candidates: only the final value counts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from lmlab.data.tasks.extract import last_numbers, numbers

Maker = Callable[[random.Random], tuple[str, list[int]]]  # rng -> (prompt, answer values)
Mistake = Callable[[dict, list[int], random.Random], list[int]]  # example, values -> wrong values

NUMBER_ONLY = "Reply with the number only."


@dataclass(frozen=True)
class NumberTask:
    """A task whose answer is integers written as ``"a, b, c"`` (one integer for most tasks)."""

    name: str
    description: str
    make: Maker
    mistake: Mistake

    def example(self, rng: random.Random) -> dict:
        prompt, values = self.make(rng)
        return {"prompt": prompt, "answer": join(values)}

    def check(self, completion: str, answer: str) -> bool:
        want = numbers(answer)
        return last_numbers(completion, len(want)) == want

    def reward(self, completion: str, answer: str) -> float:
        return 1.0 if self.check(completion, answer) else 0.0

    def wrong_answer(self, example: dict, rng: random.Random) -> str:
        values = [int(v) for v in numbers(example["answer"])]
        for _ in range(100):  # a mistake can land on the answer (e.g. swapping "11"); retry
            wrong = join(self.mistake(example, values, rng))
            if not self.check(wrong, example["answer"]):
                return wrong
        raise RuntimeError(f"{self.name}: no wrong answer found for {example!r}")


def join(values: list[int]) -> str:
    return ", ".join(str(v) for v in values)


def near_miss(value: int, rng: random.Random) -> int:
    """A plausible arithmetic slip: off by one, a lost carry (±10, ±100), swapped digits."""
    digits = str(value)
    swaps = [i for i in range(len(digits) - 1) if digits[i] != digits[i + 1]]
    kind = rng.choice(["one", "carry", "swap"] if swaps else ["one", "carry"])
    if kind == "swap":
        i = rng.choice(swaps)
        out = int(digits[:i] + digits[i + 1] + digits[i] + digits[i + 2:])
    elif kind == "carry":
        out = value + rng.choice([-1, 1]) * (100 if value >= 1000 and rng.random() < .5 else 10)
    else:
        out = value + rng.choice([-1, 1])
    return out if out >= 0 and out != value else value + 1


def _one_slip(example: dict, values: list[int], rng: random.Random) -> list[int]:
    return [near_miss(values[0], rng)]


# --- add, sub -----------------------------------------------------------------------------------


def _make_add(rng: random.Random) -> tuple[str, list[int]]:
    a, b = rng.randint(10, 999), rng.randint(10, 999)
    return f"What is {a} + {b}? {NUMBER_ONLY}", [a + b]


def _make_sub(rng: random.Random) -> tuple[str, list[int]]:
    a = rng.randint(20, 999)
    b = rng.randint(10, a - 1)
    return f"What is {a} - {b}? {NUMBER_ONLY}", [a - b]


# --- compare ------------------------------------------------------------------------------------


def _make_compare(rng: random.Random) -> tuple[str, list[int]]:
    a = rng.randint(10, 999)
    b = a
    while b == a or b < 10:
        if rng.random() < 0.5 and len(set(str(a))) > 1:  # same digits, another order: 482 / 428
            b = int("".join(rng.sample(str(a), len(str(a)))))
        else:  # close in value: 482 / 467
            b = a + rng.choice([-1, 1]) * rng.randint(1, 30)
    first, second = (a, b) if rng.random() < 0.5 else (b, a)
    return f"Which number is larger, {first} or {second}? {NUMBER_ONLY}", [max(a, b)]


def _other_number(example: dict, values: list[int], rng: random.Random) -> list[int]:
    # The natural mistake: the smaller of the two numbers in the prompt.
    return [int(v) for v in numbers(example["prompt"]) if int(v) != values[0]][:1]


# --- convert ------------------------------------------------------------------------------------

# (from, to, factor, largest amount): powers of ten take amounts up to 999 (append zeros);
# the others stay under 200 so the product is a short, learnable multiplication.
UNITS = [
    ("kilometers", "meters", 1000, 999), ("meters", "centimeters", 100, 999),
    ("centimeters", "millimeters", 10, 999), ("kilograms", "grams", 1000, 999),
    ("liters", "milliliters", 1000, 999), ("dollars", "cents", 100, 999),
    ("hours", "minutes", 60, 199), ("minutes", "seconds", 60, 199), ("days", "hours", 24, 199),
    ("weeks", "days", 7, 199), ("years", "months", 12, 199),
]


def _make_convert(rng: random.Random) -> tuple[str, list[int]]:
    src, dst, factor, top = rng.choice(UNITS)
    amount = rng.randint(2, top)
    return f"Convert {amount} {src} to {dst}. {NUMBER_ONLY}", [amount * factor]


# --- sort ---------------------------------------------------------------------------------------


def _make_sort(rng: random.Random) -> tuple[str, list[int]]:
    values = rng.sample(range(1, 100), 4)
    return (f"Sort from smallest to largest: {join(values)}. Reply with the sorted list only.",
            sorted(values))


def _unsorted(example: dict, values: list[int], rng: random.Random) -> list[int]:
    # Two neighbours swapped: the right numbers, not in order (values are distinct).
    out = list(values)
    i = rng.randrange(len(out) - 1)
    out[i], out[i + 1] = out[i + 1], out[i]
    return out


ADD = NumberTask("add", "add two 2-3 digit numbers, e.g. 347 + 589 -> 936", _make_add, _one_slip)
SUB = NumberTask("sub", "subtract a smaller 2-3 digit number, e.g. 734 - 289 -> 445",
                 _make_sub, _one_slip)
COMPARE = NumberTask("compare", "the larger of two close numbers, e.g. 482 or 428 -> 482",
                     _make_compare, _other_number)
CONVERT = NumberTask("convert", "unit conversion with an integer answer, e.g. 7 hours -> 420 "
                                "minutes", _make_convert, _one_slip)
SORT = NumberTask("sort", "sort four numbers ascending, e.g. 83, 7, 19, 42 -> 7, 19, 42, 83",
                  _make_sort, _unsorted)
