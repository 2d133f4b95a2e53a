"""Held-out phrasings and out-of-range splits: never in training, bounded as documented."""

import pytest

from lmlab.data.tasks import examples, get_task, has_split, task_names, task_rows
from lmlab.data.tasks.arith import PHRASES, SORT_LEN, SORT_RANGE_LEN
from lmlab.data.tasks.extract import numbers
from lmlab.data.tasks.style import _EVAL_ASKS, _EVAL_PREFIXES, _EVAL_SUFFIXES
from lmlab.data.tasks.text import JSON_PHRASES, REVERSE_PHRASES

ALL_PHRASES = {**PHRASES, "reverse": REVERSE_PHRASES, "json": JSON_PHRASES}
NAMES = task_names()


@pytest.fixture(scope="module")
def training_prompts():
    """10,000 training prompts per task: the rows `lmlab sft data=task:...` would train on."""
    return {name: [r["prompt"] for r in task_rows([name], "task", "train", n=10_000)]
            for name in NAMES}


def test_phrasings_are_disjoint_lists():
    for name, p in ALL_PHRASES.items():
        assert len(p.train_frames) >= 2 and len(p.eval_frames) >= 2, name
        assert len(p.train_instructions) >= 2 and len(p.eval_instructions) >= 2, name
        assert not set(p.train_frames) & set(p.eval_frames), name
        assert not set(p.train_instructions) & set(p.eval_instructions), name


@pytest.mark.parametrize("name", NAMES)
def test_no_eval_phrasing_appears_in_10k_training_rows(name, training_prompts):
    phrases = ALL_PHRASES[name]
    train = training_prompts[name]
    assert len(set(train)) == 10_000
    every_train = [p for prompts in training_prompts.values() for p in prompts]
    for instruction in phrases.eval_instructions:  # in no task's training prompt
        assert not any(instruction in p for p in every_train), instruction
    for pattern in phrases.eval_patterns():  # no training prompt is an eval frame's
        assert not any(pattern.match(p) for p in train), pattern.pattern
    # ... while every held-out prompt is one (the patterns are not vacuous).
    held = [r["prompt"] for r in examples(name, "heldout", 300)]
    assert all(any(pt.match(p) for pt in phrases.eval_patterns()) for p in held)
    assert all(any(p.endswith(" " + i) for i in phrases.eval_instructions) for p in held)
    # All train phrasings are used, each eval phrasing is drawn.
    for frames, prompts in ((phrases.train_frames, train), (phrases.eval_frames, held)):
        from lmlab.data.tasks.phrasing import frame_pattern
        assert all(any(frame_pattern(f).match(p) for p in prompts) for f in frames)


@pytest.mark.parametrize("name", ["concise", "positive"])
def test_style_tasks_hold_out_their_wrappers(name):
    train = [r["prompt"] for r in examples(name, "train", 1000)]
    held = [r["prompt"] for r in examples(name, "heldout", 100)]
    eval_bits = [p.strip() for p in _EVAL_PREFIXES + _EVAL_SUFFIXES]
    if name == "positive":
        eval_bits += [a.split("{x}")[0].strip() for a in _EVAL_ASKS]
    for bit in eval_bits:
        assert not any(bit.lower() in p.lower() for p in train), bit
    assert all(any(b.lower() in p.lower() for b in eval_bits) for p in held)
    assert not has_split(name, "range")


def _answer_numbers(name, split, n=300):
    return [(ex, [int(v) for v in numbers(ex["answer"])]) for ex in examples(name, split, n)]


def test_out_of_range_bounds():
    for ex, _ in _answer_numbers("add", "range"):
        a, b = (int(v) for v in numbers(ex["prompt"]))
        assert 1000 <= a <= 9999 and 1000 <= b <= 9999
    for ex, _ in _answer_numbers("add", "train"):
        assert all(10 <= v <= 999 for v in numbers(ex["prompt"]))
    for ex, [d] in _answer_numbers("sub", "range"):
        xs = [abs(int(v)) for v in numbers(ex["prompt"])]  # "8255 - 5874" reads -5874
        assert len(xs) == 2 and 1000 <= min(xs) < max(xs) <= 9999 and d == max(xs) - min(xs)
    for ex, [m] in _answer_numbers("compare", "range"):
        xs = [int(v) for v in numbers(ex["prompt"])]
        assert len(xs) == 2 and all(1000 <= x <= 9999 for x in xs) and m == max(xs) != min(xs)
    for ex, [v] in _answer_numbers("convert", "range"):
        amount = int(numbers(ex["prompt"])[0])
        assert 200 <= amount <= 9999 and v > 999
    for split, k in (("train", SORT_LEN), ("heldout", SORT_LEN), ("range", SORT_RANGE_LEN)):
        for ex, got in _answer_numbers("sort", split):
            assert len(got) == k and got == sorted(got) and all(1 <= v <= 99 for v in got)
    for split, (lo, hi) in (("range", (8, 10)), ("train", (4, 6)), ("heldout", (4, 6))):
        assert all(lo <= len(ex["answer"]) <= hi for ex in examples("reverse", split, 200))
    for ex in examples("json", "range", 200):
        assert all(100 <= v <= 999 for v in numbers(ex["prompt"])[:2])


def test_heldout_and_range_do_not_touch_the_training_range():
    """Held-out phrasings keep the training range, so only the wording changes."""
    for ex, _ in _answer_numbers("add", "heldout"):
        assert all(10 <= v <= 999 for v in numbers(ex["prompt"]))
    train_amounts = {int(numbers(ex["prompt"])[0]) for ex in examples("convert", "train", 500)}
    assert max(train_amounts) <= 999


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("split", ["heldout", "range"])
def test_eval_splits_are_seeded_checked_and_distinct(name, split):
    a = examples(name, split, 30, seed=1)
    assert a == examples(name, split, 30, seed=1) and examples(name, split, 10, seed=1) == a[:10]
    assert len({r["prompt"] for r in a}) == 30
    task = get_task(name)
    assert all(task.check(r["answer"], r["answer"]) for r in a)
    test = {r["prompt"] for r in examples(name, "test", 100)}
    assert not test & {r["prompt"] for r in examples(name, split, 100)}


def test_eval_prompts_and_answers_fit_the_decode_budget(tokenizer):
    from lmlab.eval.tasks import RANGE_EXTRA_TOKENS

    for name in NAMES:
        for split in ("heldout", "range"):
            extra = RANGE_EXTRA_TOKENS if split == "range" else 0
            for ex in examples(name, split, 60):
                assert len(tokenizer(ex["prompt"])["input_ids"]) <= 48, ex
                assert len(tokenizer(ex["answer"])["input_ids"]) <= 14 + extra, ex
