"""The report's training-recipes tables, from hand-made run summaries."""

from pathlib import Path

from lmlab.report.collect import RunData
from lmlab.report.recipes import recipe_items


def _run(label, data, summary):
    base = {"stage": "sft", "steps": 60,
            "eval_after": {f"eval/heldout_accuracy/{t}": v for t, v in summary.pop("acc").items()}}
    return RunData(Path(label), "sft", {"data": data}, {**base, **summary}, label=label)


def test_no_recipe_runs_no_section():
    assert recipe_items([_run("plain", "task:add", {"acc": {"add": 0.5}})]) == []


def test_recipe_tables():
    runs = [
        _run("random", "task:add", {"acc": {"add": 0.4}, "final_loss": 1.0}),
        _run("curr", "task:add", {"acc": {"add": 0.5}, "final_loss": 1.1, "recipe": {
            "curriculum": {"scoring": "params", "pacing": "linear"}}}),
        _run("mixed", "task:add,sort", {"acc": {"add": 0.3, "sort": 0.6}, "recipe": {
            "mixture": {"sources": ["task:add", "task:sort"], "probs": [0.75, 0.25]}}}),
        _run("b-ewc", "task:sort", {"acc": {"add": 0.45, "sort": 0.7}, "continual": {
            "method": "ewc", "tasks_a": ["add"], "tasks_b": ["sort"],
            "after_a": {"add": 0.5, "sort": 0.1}, "after_b": {"add": 0.45, "sort": 0.7},
            "a_kept": 0.9}}),
    ]
    cur, mix, cont = recipe_items(runs)
    assert [row[:3] for row in cur.rows] == [["random", "task:add", "random"],
                                             ["curr", "task:add", "params / linear"]]
    assert cur.columns[-1] == "sort" and cur.rows[1][-2] == 0.5
    mixed = next(row for row in mix.rows if row[0] == "mixed")
    assert mixed[2] == "add 75%, sort 25%" and mixed[-2:] == [0.3, 0.6]
    assert cont.rows == [["b-ewc", "ewc", "add", "sort", 0.5, 0.1, 0.45, 0.7, 0.9]]
