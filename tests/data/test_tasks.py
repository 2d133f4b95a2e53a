"""Built-in tasks: seeded generators, disjoint splits, checkers, rewards and row formats."""

import json
import random

import pytest

from lmlab.data import normalize_row
from lmlab.data.tasks import (TASKS, examples, get_task, score, split_of, task_names,
                              task_rows)
from lmlab.data.tasks.extract import clean, numbers
from lmlab.errors import UserError

NAMES = task_names()


def test_registry_names_the_built_in_tasks():
    assert NAMES == ["add", "sub", "compare", "convert", "sort", "reverse", "json"]
    for name in NAMES:
        task = get_task(name)
        assert task.name == name and task.description


@pytest.mark.parametrize("name", NAMES)
def test_examples_are_deterministic_per_seed_and_a_prefix_for_smaller_n(name):
    a = examples(name, "train", 40, seed=3)
    assert a == examples(name, "train", 40, seed=3)
    assert examples(name, "train", 15, seed=3) == a[:15]
    assert [r["prompt"] for r in examples(name, "train", 40, seed=4)] != [r["prompt"] for r in a]
    assert all(set(r) == {"prompt", "answer"} for r in a)


@pytest.mark.parametrize("name", NAMES)
def test_train_and_test_never_share_a_prompt(name):
    train = [r["prompt"] for r in examples(name, "train", 500)]
    test = [r["prompt"] for r in examples(name, "test", 500)]
    assert len(set(train)) == 500 and len(set(test)) == 500  # deduplicated
    assert not set(train) & set(test)
    assert {split_of(p) for p in train} == {"train"} and {split_of(p) for p in test} == {"test"}
    # Another seed draws other prompts but still from the same side of the split.
    other = [r["prompt"] for r in examples(name, "train", 200, seed=1)]
    assert not set(other) & set(test)


def test_split_depends_on_the_prompt_text_only():
    prompts = [f"prompt {i}" for i in range(2000)]
    assert [split_of(p) for p in prompts] == [split_of(p) for p in prompts]
    assert 0.07 < sum(split_of(p) == "test" for p in prompts) / len(prompts) < 0.13


@pytest.mark.parametrize("name", NAMES)
def test_check_accepts_the_answer_and_rejects_wrong_answers(name):
    task, rng = get_task(name), random.Random(0)
    for ex in examples(name, "test", 200, seed=7):
        answer = ex["answer"]
        for reply in (answer, f"  {answer}\n", f"\n{answer}<|im_end|>",
                      f"{answer}<|im_end|>\n<|im_start|>user\nWhat is 1 + 2?"):
            assert task.check(reply, answer), (reply, answer)
            assert task.reward(reply, answer) == 1.0
        wrong = task.wrong_answer(ex, rng)
        assert wrong != answer
        assert not task.check(wrong, answer), (wrong, answer)
        assert not task.check(f" {wrong}<|im_end|>", answer)
        assert 0.0 <= task.reward(wrong, answer) < 1.0


@pytest.mark.parametrize("name", NAMES)
def test_reward_is_one_exactly_when_check_holds(name):
    task, rng = get_task(name), random.Random(1)
    replies = ["", "I don't know.", "0", '{"answer": 0}', "abc"]
    for ex in examples(name, "train", 50):
        replies += [ex["answer"], task.wrong_answer(ex, rng), "The answer is " + ex["answer"]]
        for reply in replies[-8:]:
            r = task.reward(reply, ex["answer"])
            assert (r == 1.0) == task.check(reply, ex["answer"])
            assert 0.0 <= r <= 1.0


def test_wrong_answers_are_deterministic_and_in_the_answer_format():
    ex = examples("sort", "train", 1)[0]
    sort = get_task("sort")
    assert sort.wrong_answer(ex, random.Random(5)) == sort.wrong_answer(ex, random.Random(5))
    wrong = sort.wrong_answer(ex, random.Random(5))
    assert sorted(numbers(wrong)) == numbers(ex["answer"]) != numbers(wrong)  # same, unsorted
    ex = examples("json", "train", 1)[0]
    assert set(json.loads(get_task("json").wrong_answer(ex, random.Random(0)))) == {"answer"}
    ex = {"prompt": "Which number is larger, 482 or 428? Reply with the number only.",
          "answer": "482"}
    assert get_task("compare").wrong_answer(ex, random.Random(0)) == "428"


# Hand-written replies per task: (task, answer, reply, expected check()).
CASES = [
    ("add", "936", "936", True),
    ("add", "936", "The answer is 936.", True),  # the final line states it after a cue
    ("add", "936", "347 + 589 = 936", True),
    ("add", "936", "**936**", True),
    ("add", "936", "936.0", True),
    ("add", "936", "963", False),
    ("add", "936", "936 or 937", False),
    ("add", "936", "9 3 6", False),
    ("add", "936", "", False),
    ("add", "1237", "1,237", True),  # thousands separator
    ("add", "1237", "1, 237", False),  # two numbers
    ("sub", "58", "347 - 289 = 58", True),
    ("sub", "58", "-58", False),
    ("sub", "58", "347-289", False),  # a hyphen between digits is no minus sign: reads 289
    ("compare", "482", "482", True),
    ("compare", "482", "482 is larger than 428", False),  # states no answer
    # Strict: the final line must state the answer, not merely mention it (issue 26 item 8).
    ("compare", "865", "856 is a multiple of 18, and 865 is not.", False),
    ("compare", "865", "The answer is 865.", True),
    ("compare", "865", "865", True),
    ("compare", "865", "The larger number is **865**.", True),
    ("compare", "865", "865\nI hope this helps!", False),  # the final line is no answer
    ("compare", "865", "Let me compare the digits.\n865", True),
    ("compare", "865", "Not 856 but 865", False),
    ("add", "936", "936, I think. Check: 937", False),
    ("compare", "482", "428", False),
    ("convert", "420", "420 minutes", True),
    ("convert", "12000", "12,000", True),
    ("convert", "12000", "12000<|im_end|>", True),
    ("convert", "12000", "1200", False),
    ("sort", "7, 19, 42, 83", "7, 19, 42, 83", True),
    ("sort", "7, 19, 42, 83", "[7, 19, 42, 83]", True),
    ("sort", "7, 19, 42, 83", "7 19 42 83", True),
    ("sort", "7, 19, 42, 83", "Sorted: 7, 19, 42, 83.", True),
    ("sort", "7, 19, 42, 83", "83, 7, 19, 42 -> 7, 19, 42, 83", True),  # the last four count
    ("sort", "7, 19, 42, 83", "7, 19, 83, 42", False),
    ("sort", "7, 19, 42, 83", "19, 42, 83", False),
    ("sort", "7, 19, 42, 83", "7, 19, 42, 83, 90", False),
    ("reverse", "ilomab", "ilomab", True),
    ("reverse", "ilomab", "'Ilomab'.", True),  # case and quotes do not matter
    ("reverse", "ilomab", "The reversed word is ilomab", True),
    ("reverse", "ilomab", "ilomba", False),
    ("reverse", "ilomab", "bamoli", False),
    ("reverse", "ilomab", "i-l-o-m-a-b", False),
    ("reverse", "ilomab", "ilomab or bamoli", False),
    ("reverse", "ilomab", "Not ilomab.", False),  # mentions it, does not state it
    ("reverse", "ilomab", "ilomab\nThat is the word backwards.", False),
    ("json", '{"answer": 71}', '{"answer": 71}', True),
    ("json", '{"answer": 71}', '{"answer":71.0}', True),
    ("json", '{"answer": 71}', '```json\n{\n  "answer": 71\n}\n```', True),
    ("json", '{"answer": 71}', '{"answer": 72}', False),
    ("json", '{"answer": 71}', "71", False),
    ("json", '{"answer": 71}', 'Answer: {"answer": 71}', False),  # only the object
    ("json", '{"answer": 71}', '{"answer": "71"}', False),  # a string, not a number
    ("json", '{"answer": 71}', '{"answer": 71, "why": "sum"}', False),  # one key only
    ("json", '{"answer": 71}', '{"answer": true}', False),
    ("json", '{"answer": 71}', '[71]', False),
]


@pytest.mark.parametrize("name, answer, reply, ok", CASES)
def test_hand_written_replies(name, answer, reply, ok):
    assert get_task(name).check(reply, answer) is ok
    assert (get_task(name).reward(reply, answer) == 1.0) is ok


def test_json_gives_a_small_credit_for_the_right_format_only():
    json_task, answer = get_task("json"), '{"answer": 71}'
    assert json_task.reward('{"answer": 71}', answer) == 1.0
    assert json_task.reward('{"answer": 70}', answer) == pytest.approx(0.1)
    assert json_task.reward("71", answer) == 0.0
    assert json_task.reward('{"answer": "71"}', answer) == 0.0
    assert get_task("add").reward("937", "936") == 0.0  # number tasks: no partial credit


def test_clean_cuts_at_the_first_end_of_turn_marker():
    assert clean("  12 <|im_end|> 13") == "12"
    assert clean("12</s><|im_end|>") == "12"
    assert clean("\n7, 8\n<|im_start|>user") == "7, 8"


def test_prompts_and_answers_are_short(tokenizer):
    for name in NAMES:
        for ex in examples(name, "train", 100):
            assert len(tokenizer(ex["prompt"])["input_ids"]) <= 40, ex
            # SmolLM2 writes each digit as a token; four 2-digit numbers with ", " take 14.
            assert len(tokenizer(ex["answer"])["input_ids"]) <= (14 if name == "sort" else 12)


@pytest.mark.parametrize("kind", ["task", "chat", "preference", "text"])
def test_task_rows_shapes_interleave_and_pass_validation(kind):
    rows = task_rows(["add", "sort"], kind, "test", n=5, seed=2)
    assert len(rows) == 10
    add, srt = examples("add", "test", 5, 2), examples("sort", "test", 5, 2)
    first = rows[0]
    if kind == "task":
        assert first == {**add[0], "task": "add"} and rows[1] == {**srt[0], "task": "sort"}
    elif kind == "chat":
        assert first == {"messages": [{"role": "user", "content": add[0]["prompt"]},
                                      {"role": "assistant", "content": add[0]["answer"]}],
                         "task": "add"}
    elif kind == "preference":
        assert set(first) == {"prompt", "chosen", "rejected", "task"}
        assert (first["prompt"], first["chosen"]) == (add[0]["prompt"], add[0]["answer"])
        assert all(not get_task(r["task"]).check(r["rejected"], r["chosen"]) for r in rows)
    else:
        assert first == {"text": add[0]["prompt"] + "\n" + add[0]["answer"]}
    assert rows[::2] == task_rows(["add"], kind, "test", n=5, seed=2)  # interleaved a, b, a, b
    for i, row in enumerate(rows):
        normalize_row(row, kind, file="task", line=i + 1)  # raises on a bad row
    assert task_rows(["add", "sort"], kind, "test", n=5, seed=2) == rows


def test_task_rows_all_and_default_sizes():
    rows = task_rows(["all"], "task", "test")
    assert len(rows) == 100 * len(TASKS)
    assert [r["task"] for r in rows[:len(TASKS)]] == NAMES
    assert len(task_rows(["add"], "task", "train")) == 1000
    assert len(task_rows(["add", "all"], "task", "test", n=2)) == 2 * len(TASKS)  # no repeats


def test_unknown_names_raise_user_errors_that_list_the_tasks():
    with pytest.raises(UserError, match="unknown task 'nope'.*add, sub, compare"):
        get_task("nope")
    with pytest.raises(UserError, match="unknown task"):
        examples("nope", "train", 1)
    with pytest.raises(UserError, match="unknown task"):
        task_rows(["add", "nope"], "task", "train", n=1)
    with pytest.raises(UserError, match="unknown split 'dev'"):
        examples("add", "dev", 1)
    with pytest.raises(UserError, match="unknown split"):
        task_rows(["add"], "chat", "validation", n=1)
    with pytest.raises(UserError, match="unknown row kind 'kto'"):
        task_rows(["add"], "kto", "train", n=1)
    with pytest.raises(UserError, match="no task names"):
        task_rows([], "task", "train", n=1)
    with pytest.raises(UserError, match="non-negative"):
        examples("add", "train", -1)


def test_a_split_too_small_for_n_is_a_user_error(monkeypatch):
    from lmlab.data.tasks import core

    tiny = core.TASKS["add"].__class__(
        "tiny", "two prompts", lambda rng, variant: (f"p{rng.randint(0, 1)}", [1]),
        lambda ex, values, rng: [2])
    monkeypatch.setitem(core.TASKS, "tiny", tiny)
    monkeypatch.setattr(core, "_MIN_DRAWS", 50)
    with pytest.raises(UserError, match="too few distinct train prompts"):
        examples("tiny", "train", 5)


def test_score_counts_with_the_task_checker():
    s = score("add", ["936", "The answer is 936.", "963", ""], ["936"] * 4)
    assert s == {"accuracy": 0.5, "n": 4, "correct": 2, "mean_reward": 0.5}
    s = score(get_task("json"), ['{"answer": 2}', '{"answer": 3}'], ['{"answer": 2}'] * 2)
    assert (s["correct"], s["mean_reward"]) == (1, pytest.approx(0.55))
    assert score("add", [], [])["accuracy"] == 0.0
    with pytest.raises(UserError, match="2 completions but 1 answers"):
        score("add", ["1", "2"], ["1"])
