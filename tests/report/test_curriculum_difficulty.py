"""The report's curriculum table by difficulty, from hand-made run summaries and samples."""

from pathlib import Path

from lmlab.report.collect import RunData
from lmlab.report.recipes import curriculum_difficulty_table


def _run(label, recipe, flags):
    # flags: (prompt, correct) pairs of compare held-out samples
    samples = [{"task": "compare", "split": "heldout", "prompt": p, "answer": "0", "correct": c}
               for p, c in flags]
    summary = {"stage": "sft", "steps": 60, "recipe": recipe,
               "eval_after": {"eval/heldout_accuracy/compare": 0.5}}
    return RunData(Path(label), "sft", {"data": "task:compare"}, summary, samples=samples,
                   label=label)


def test_difficulty_table_by_hand():
    easy, hard = "Name the maximum of 640 and 615.", "Name the maximum of 482 and 428."  # 3, 4
    runs = [_run("random", {}, [(easy, True), (hard, False)]),
            _run("params", {"curriculum": {"scoring": "params", "pacing": "root"}},
                 [(easy, True), (hard, True), ("Name the maximum of 905 and 901.", False)])]
    t = curriculum_difficulty_table(runs)
    assert t.columns == ["run", "order", "compare score 3", "compare score 4"]
    assert t.rows == [["random", "random", "100% (1/1)", "0% (0/1)"],
                      ["params", "params / root", "100% (1/1)", "50% (1/2)"]]


def test_no_curriculum_run_or_no_samples_no_table():
    plain = _run("random", {}, [("Name the maximum of 640 and 615.", True)])
    assert curriculum_difficulty_table([plain]) is None
    cur = _run("params", {"curriculum": {"scoring": "params", "pacing": "root"}}, [])
    assert curriculum_difficulty_table([cur]) is None
