"""Pair building, labellers and prompt loading for `lmlab preferences`."""

import json

import pytest

from lmlab.data.preferences import (JudgeLabeller, RuleLabeller, TaskLabeller, load_prompt_rows,
                                    make_pairs)
from lmlab.errors import DataError, UserError
from lmlab.eval.rubric_judge import Verdict


def test_best_worst_pairs_and_ties():
    pairs, st = make_pairs(["a", "b", "c"], [0.2, 0.9, 0.1])
    assert pairs == [(1, 2)] and st == {"ties": 0, "unscored": 0, "identical": 0}
    pairs, st = make_pairs(["a", "b", "c"], [1.0, 1.0, 1.0])
    assert pairs == [] and st["ties"] == 1
    pairs, st = make_pairs(["a", "b"], [0.5, 0.6], min_margin=0.1)  # gap 0.1 <= margin: a tie
    assert pairs == [] and st["ties"] == 1


def test_all_pairs_unscored_and_identical():
    pairs, st = make_pairs(["a", "b", "c", "d"], [1.0, 0.0, 1.0, None], pairing="all")
    assert sorted(pairs) == [(0, 1), (2, 1)] and st["ties"] == 1 and st["unscored"] == 1
    pairs, st = make_pairs(["same", " same", "x"], [1.0, 0.0, 0.5], pairing="best_worst")
    assert pairs == [] and st["identical"] == 1
    with pytest.raises(UserError, match="pairing"):
        make_pairs(["a"], [1.0], pairing="random")


def test_task_labeller_uses_the_checker():
    rows = [{"prompt": "What is 2 + 3?", "answer": "5", "task": "add"}] * 2
    assert TaskLabeller(rows)([r["prompt"] for r in rows], rows, ["5", "6"]) == [1.0, 0.0]
    with pytest.raises(UserError, match="labeller=task needs task prompts"):
        TaskLabeller([{"prompt": "hi"}])
    with pytest.raises(UserError, match="unknown task"):
        TaskLabeller([{"prompt": "hi", "answer": "x", "task": "nope"}])


def test_rule_labeller():
    lab = RuleLabeller("concise")
    long = "Well, basically, you know, " + "it is a thing. " * 20
    a, b = lab(["q", "q"], [{}, {}], ["Paris.", long])
    assert a == 1.0 and b < 0.5


class _StubJudge:
    """Prefers the longer reply, in both orders, except for ties it cannot decide."""

    def compare(self, prompts, xs, ys):
        return [Verdict(None if len(x) == len(y) else (0 if len(x) > len(y) else 1), None,
                        None, None) for x, y in zip(xs, ys)]


def test_pairwise_judge_counts_wins_within_each_prompt():
    lab = JudgeLabeller(_StubJudge(), "pairwise", n=3)
    texts = ["aaa", "a", "aa", "bb", "bb", "b"]  # two prompts, three replies each
    wins = lab(["p"] * 3 + ["q"] * 3, [{}] * 6, texts)
    assert wins == [2, 0, 1, 1, 1, 0]
    assert lab.compared == 6 and lab.consistent == 5  # "bb" vs "bb" is undecided


def test_load_prompt_rows(tmp_path):
    rows = load_prompt_rows("task:add,sort", split="test", limit=4)
    assert len(rows) == 4 and {"prompt", "answer", "task"} <= set(rows[0])
    txt = tmp_path / "p.txt"
    txt.write_text("first prompt\n\n  second prompt  \n")
    assert [r["prompt"] for r in load_prompt_rows(str(txt))] == ["first prompt", "second prompt"]
    js = tmp_path / "p.jsonl"
    js.write_text(json.dumps({"prompt": "hi", "id": 7}) + "\n" + json.dumps(
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
        + "\n")
    rows = load_prompt_rows(str(js))
    assert rows[0] == {"prompt": "hi", "id": 7}
    assert rows[1]["prompt"] == [{"role": "user", "content": "q"}]


@pytest.mark.parametrize("body,match", [
    ('{"prompt": "ok"}\n{not json\n', "p.jsonl:2: not valid JSON"),
    ('{"text": "no prompt"}\n', "p.jsonl:1: field 'prompt': missing"),
    ('{"prompt": "  "}\n', "p.jsonl:1: field 'prompt': is empty"),
    ('{"messages": [{"role": "user"}]}\n', "p.jsonl:1: field 'messages\\[0\\].content'"),
    ("", "no prompts")])
def test_bad_prompt_files(tmp_path, body, match):
    f = tmp_path / "p.jsonl"
    f.write_text(body)
    with pytest.raises(DataError, match=match):
        load_prompt_rows(str(f))


def test_missing_or_unsupported_prompt_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_prompt_rows(str(tmp_path / "nope.jsonl"))
    f = tmp_path / "p.csv"
    f.write_text("prompt\nhi\n")
    with pytest.raises(DataError, match=".jsonl or a .txt"):
        load_prompt_rows(str(f))
