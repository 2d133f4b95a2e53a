"""Tasks whose answer is one or more integers: add, sub, compare, convert, sort.

All share one checker (``NumberTask.check``), strict about where the answer is: the completion
is cleaned (cut at the first end-of-turn marker, stripped) and only its FINAL LINE is read. That
line must state the answer: either it is the number(s) alone ("936", "**936**", "936.",
"[7, 19, 42, 83]", "420 minutes") or the number(s) end it right after an answer cue - "is",
"are", "answer", "equals", "=", ":", "->" ("The answer is 936.", "347 + 589 = 936",
"Sorted: 7, 19, 42, 83"). The numbers that end the line must equal the answer's, all of them
and no more. "12,000" and "936.0" read as 12000 and 936. So "963", "936 or 937", "936, I
think. Check: 937", "482 is larger than 428" and "856 is a multiple of 18, and 865 is not."
are wrong whatever the answer: a reply that mentions the right number somewhere is not credited
unless it states it as the answer.

Every task draws from three variants (``phrasing.py``): ``train`` (train phrasings, the training
range), ``heldout`` (held-out phrasings, the training range), ``range`` (train phrasings, larger
numbers or a longer list).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from lmlab.data.tasks.extract import numbers, stated_numbers
from lmlab.data.tasks.phrasing import (
    NUMBER_EVAL,
    NUMBER_TRAIN,
    Phrasings,
    check_variant,
)

# (rng, variant) -> (prompt, answer values); variant in phrasing.VARIANTS
Maker = Callable[[random.Random, str], tuple[str, list[int]]]
Mistake = Callable[[dict, list[int], random.Random], list[int]]  # example, values -> wrong values


@dataclass(frozen=True)
class NumberTask:
    """A task whose answer is integers written as ``"a, b, c"`` (one integer for most tasks)."""

    name: str
    description: str
    make: Maker
    mistake: Mistake
    variants: tuple[str, ...] = ("heldout", "range")  # the eval-only variants it can draw

    def example(self, rng: random.Random, variant: str = "train") -> dict:
        check_variant(variant)
        prompt, values = self.make(rng, variant)
        return {"prompt": prompt, "answer": join(values)}

    def check(self, completion: str, answer: str) -> bool:
        return stated_numbers(completion) == numbers(answer)

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


def _operand_range(variant: str) -> tuple[int, int]:
    """2-3 digit operands for training; 4 digits out of range."""
    return (1000, 9999) if variant == "range" else (10, 999)


# --- add, sub -----------------------------------------------------------------------------------

ADD_PHRASES = Phrasings(
    train_frames=("What is {a} + {b}?", "Add {a} and {b}.", "Compute {a} + {b}.", "{a} + {b} = ?"),
    eval_frames=("Find the sum of {a} and {b}.", "What do you get when you add {a} to {b}?",
                 "Calculate the total of {a} plus {b}."),
    train_instructions=NUMBER_TRAIN, eval_instructions=NUMBER_EVAL)
SUB_PHRASES = Phrasings(
    train_frames=("What is {a} - {b}?", "Subtract {b} from {a}.", "Compute {a} - {b}.",
                  "{a} - {b} = ?"),
    eval_frames=("What is {a} minus {b}?", "Find the difference between {a} and {b}.",
                 "Take {b} away from {a}. What is left?"),
    train_instructions=NUMBER_TRAIN, eval_instructions=NUMBER_EVAL)


def _make_add(rng: random.Random, variant: str) -> tuple[str, list[int]]:
    lo, hi = _operand_range(variant)
    a, b = rng.randint(lo, hi), rng.randint(lo, hi)
    return ADD_PHRASES.prompt(rng, variant, a=a, b=b), [a + b]


def _make_sub(rng: random.Random, variant: str) -> tuple[str, list[int]]:
    lo, hi = _operand_range(variant)
    a = rng.randint(lo + 10, hi)
    b = rng.randint(lo, a - 1)
    return SUB_PHRASES.prompt(rng, variant, a=a, b=b), [a - b]


# --- compare ------------------------------------------------------------------------------------

COMPARE_PHRASES = Phrasings(
    train_frames=("Which number is larger, {x} or {y}?", "Which is bigger: {x} or {y}?",
                  "Of {x} and {y}, which is larger?", "Larger of {x} and {y}?"),
    eval_frames=("Pick the greater number: {x} or {y}.", "{x} and {y}: which one is greater?",
                 "Name the maximum of {x} and {y}."),
    train_instructions=NUMBER_TRAIN, eval_instructions=NUMBER_EVAL)


def _make_compare(rng: random.Random, variant: str) -> tuple[str, list[int]]:
    lo, hi = _operand_range(variant)
    a = rng.randint(lo, hi)
    b = a
    while b == a or not lo <= b <= hi:
        if rng.random() < 0.5 and len(set(str(a))) > 1:  # same digits, another order: 482 / 428
            b = int("".join(rng.sample(str(a), len(str(a)))))
        else:  # close in value: 482 / 467
            b = a + rng.choice([-1, 1]) * rng.randint(1, 30)
    x, y = (a, b) if rng.random() < 0.5 else (b, a)
    return COMPARE_PHRASES.prompt(rng, variant, x=x, y=y), [max(a, b)]


def _other_number(example: dict, values: list[int], rng: random.Random) -> list[int]:
    # The natural mistake: the smaller of the two numbers in the prompt.
    return [int(v) for v in numbers(example["prompt"]) if int(v) != values[0]][:1]


# --- convert ------------------------------------------------------------------------------------

# (from, to, factor, largest amount): powers of ten take amounts up to 999 (append zeros);
# the others stay under 200 so the product is a short, learnable multiplication. Out of range:
# amounts from 1000 (powers of ten) or from 200 up to 999 (the others).
UNITS = [
    ("kilometers", "meters", 1000, 999), ("meters", "centimeters", 100, 999),
    ("centimeters", "millimeters", 10, 999), ("kilograms", "grams", 1000, 999),
    ("liters", "milliliters", 1000, 999), ("dollars", "cents", 100, 999),
    ("hours", "minutes", 60, 199), ("minutes", "seconds", 60, 199), ("days", "hours", 24, 199),
    ("weeks", "days", 7, 199), ("years", "months", 12, 199),
]
CONVERT_PHRASES = Phrasings(
    train_frames=("Convert {n} {src} to {dst}.", "{n} {src} is how many {dst}?",
                  "Express {n} {src} in {dst}."),
    eval_frames=("How many {dst} are there in {n} {src}?", "What is {n} {src} in {dst}?",
                 "Turn {n} {src} into {dst}."),
    train_instructions=NUMBER_TRAIN, eval_instructions=NUMBER_EVAL)


def _make_convert(rng: random.Random, variant: str) -> tuple[str, list[int]]:
    src, dst, factor, top = rng.choice(UNITS)
    if variant == "range":
        amount = rng.randint(1000, 9999) if top == 999 else rng.randint(top + 1, 999)
    else:
        amount = rng.randint(2, top)
    return CONVERT_PHRASES.prompt(rng, variant, n=amount, src=src, dst=dst), [amount * factor]


# --- sort ---------------------------------------------------------------------------------------

SORT_LEN, SORT_RANGE_LEN = 4, 6  # numbers per list: training, out of range (longer lists)
SORT_PHRASES = Phrasings(
    train_frames=("Sort from smallest to largest: {items}.",
                  "Put these numbers in ascending order: {items}.",
                  "Order from lowest to highest: {items}."),
    eval_frames=("Arrange {items} in increasing order.",
                 "List {items} from the least to the greatest."),
    train_instructions=("Reply with the sorted list only.", "Give only the sorted numbers."),
    eval_instructions=("Answer with just the list.", "Write nothing but the ordered numbers."))


def _make_sort(rng: random.Random, variant: str) -> tuple[str, list[int]]:
    values = rng.sample(range(1, 100), SORT_RANGE_LEN if variant == "range" else SORT_LEN)
    return SORT_PHRASES.prompt(rng, variant, items=join(values)), sorted(values)


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
PHRASES = {"add": ADD_PHRASES, "sub": SUB_PHRASES, "compare": COMPARE_PHRASES,
           "convert": CONVERT_PHRASES, "sort": SORT_PHRASES}
