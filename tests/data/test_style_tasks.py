"""Built-in style tasks: seeded, split, chosen passes the rule and rejected fails it."""

import pytest

from lmlab.data import load_rows
from lmlab.data.tasks import get_task, split_of, task_names, task_rows
from lmlab.errors import UserError


@pytest.mark.parametrize("name", ["concise", "positive"])
def test_style_pairs_are_separated_by_the_rule(name):
    task = get_task(name)
    tasks = task_rows([name], "task", "train", 200)
    pairs = task_rows([name], "preference", "train", 200)
    assert [p["prompt"] for p in pairs] == [t["prompt"] for t in tasks]
    assert all(task.check(p["chosen"], t["answer"]) for p, t in zip(pairs, tasks))
    assert not any(task.check(p["rejected"], t["answer"]) for p, t in zip(pairs, tasks))
    assert all(task.reward(p["chosen"], t["answer"]) > task.reward(p["rejected"], t["answer"])
               for p, t in zip(pairs, tasks))
    assert pairs == task_rows([name], "preference", "train", 200)  # seeded


@pytest.mark.parametrize("name", ["concise", "positive"])
def test_style_splits_are_disjoint_and_big_enough(name):
    train = {r["prompt"] for r in task_rows([name], "task", "train")}  # default n = 1000
    test = {r["prompt"] for r in task_rows([name], "task", "test")}  # default n = 100
    assert len(train) == 1000 and len(test) == 100 and not train & test
    assert all(split_of(p) == "test" for p in test)


def test_concise_checker():
    task = get_task("concise")
    ans = "The capital of Norway is Oslo."
    assert task.check("Oslo.<|im_end|>", ans)
    assert not task.check("The capital is Bergen.", ans)  # short but wrong
    assert not task.check("Well, basically, you know, it is Oslo. It is Oslo. I mean, Oslo.", ans)


def test_style_tasks_are_named_not_in_all():
    assert "concise" not in task_names() and "positive" not in task_names()
    rows = load_rows("task:concise,positive", "preference", split="test", limit=4)
    assert len(rows) == 4 and "capital" not in rows[1]["prompt"]  # interleaved a, b, a, b
    with pytest.raises(UserError, match="style tasks: concise, positive"):
        get_task("verbose")
