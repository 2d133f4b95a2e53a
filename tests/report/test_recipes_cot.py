"""The report's chain-of-thought and self-instruct tables, from hand-made summaries."""

from __future__ import annotations

from lmlab.report.collect import RunData
from lmlab.report.recipes_cot import cot_table, recipe_tables, self_instruct_table


def _acc(x):
    return {"test": {"mean": {"accuracy": x}}}


def test_cot_table_puts_both_arms_side_by_side(tmp_path):
    plain = RunData(tmp_path / "a", "sft", {"data": "task:add"},
                    {"steps": 40, "data": {"trained_tokens": 100}, "train_seconds": 9.0,
                     "task_eval_before": _acc(0.25), "task_eval_after": _acc(0.5)}, label="a")
    cot = RunData(tmp_path / "c", "sft", {"data": "task:add?cot=1"},
                  {"steps": 40, "data": {"trained_tokens": 900}, "train_seconds": 20.0,
                   "task_eval_before": _acc(0.25), "task_eval_after": _acc(0.75)}, label="c")
    t = cot_table([plain, cot])
    assert [r[:2] for r in t.rows] == [["a", "answer only"], ["c", "worked solution"]]
    assert t.rows[1][2:8] == ["task:add", 40, 900, 20.0, 0.25, 0.75]
    assert t.rows[1][8:] == [None] * 4  # heldout, range not measured
    assert cot_table([plain]) is None  # no CoT run: the section stays out


def test_self_instruct_table_links_the_sft_on_its_rows(tmp_path):
    si = RunData(tmp_path / "si", "self-instruct", {"model": "m"},
                 {"seeds": 8, "generated": 10, "kept": 3,
                  "rejected": {"not_novel": 4, "checker": 2, "format": 1}}, label="si")
    sft = RunData(tmp_path / "sft", "sft", {"data": str(tmp_path / "si" / "kept.jsonl")},
                  {"task_eval_before": _acc(0.2), "task_eval_after": _acc(0.4)}, label="sft")
    t = self_instruct_table([si, sft])
    row = dict(zip(t.columns, t.rows[0]))
    assert (row["generated"], row["kept"], row["not_novel"], row["checker"], row["judge"]) == \
        (10, 3, 4, 2, None)
    assert (row["SFT on it"], row["in-template before"], row["in-template after"]) == \
        ("sft", 0.2, 0.4)
    assert recipe_tables([sft]) == []
