"""Bad-input corpus, evaluation splits and the contamination check: a wrong split name fails
before any work with a message naming the key and the known splits."""

from __future__ import annotations


def test_unknown_task_split_in_evaluate(fail, tmp_path):
    got = fail("evaluate", "model=tiny:llama", "sets=tasks", "task_splits=test,heldot",
               f"output_dir={tmp_path / 'ev'}")
    assert got.says("task_splits", "heldot", "test, heldout, range")
    assert not (tmp_path / "ev").exists()


def test_unknown_eval_split_in_sft(fail, tmp_path):
    got = fail("sft", "model=tiny:llama", "data=task:add", "eval_splits=in-template",
               f"output_dir={tmp_path / 'sft'}")
    assert got.says("eval_splits", "in-template", "test, heldout, range")
    assert not (tmp_path / "sft").exists()


def test_bad_contamination_n(fail, tmp_path):
    assert fail("evaluate", "model=tiny:llama", "sets=tasks", "contamination_n=1",
                f"output_dir={tmp_path / 'ev'}").says("contamination_n")


def test_split_a_task_does_not_have(tmp_path):
    import pytest

    from lmlab.data.tasks import examples
    from lmlab.errors import UserError

    with pytest.raises(UserError, match="task 'concise' has no 'range' split"):
        examples("concise", "range", 3)
