"""The report from fixture run folders (every kind of file a stage writes) and from real tiny
runs made by the pipeline."""

import json
import re

import pytest
import yaml

from lmlab.cli import main
from lmlab.report import build_report, headline_lines
from lmlab.report.collect import discover
from lmlab.report.tables import acc_value, fmt, task_comparison

SECTIONS = ("Findings", "Model comparison", "Runs", "Training curves", "Samples", "Speed",
            "Environment")


def write_run(path, stage, config, summary=None, metrics=(), samples=()):
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump({"stage": stage, **config}))
    if summary is not None:
        (path / "summary.json").write_text(json.dumps(summary))
    (path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    if samples:
        (path / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))


def curve(n, **keys):
    return [{"step": i + 1, "train/step_s": 2.0, "train/tokens_per_s": 100.0 + i,
             "train/mem_gb": 1.0 + i / 10, **{k: v + 0.01 * i for k, v in keys.items()}}
            for i in range(n)]


PROMPTS = ["What is 2 + 3?", "Convert 3 m to cm."]


@pytest.fixture()
def fixture_runs(tmp_path):
    """A pipeline-shaped folder: sft, reward, dpo (from sft), generate, evaluate, an unfinished
    run, a benchmark file."""
    root = tmp_path / "runs" / "demo"
    sft = root / "sft"
    write_run(sft, "sft", {"model": "smollm2-135m-instruct", "method": "lora", "eval_n": 40},
              {"stage": "sft", "method": "lora", "steps": 12, "final_loss": 0.4321,
               "train_seconds": 61.5,
               "eval_before": {"eval/accuracy": 0.1125, "eval/accuracy/convert": 0.0,
                               "eval/accuracy/compare": 0.225},
               "eval_after": {"eval/accuracy": 0.4625, "eval/accuracy/convert": 0.475,
                              "eval/accuracy/compare": 0.45}},
              curve(12, **{"train/loss": 1.5}),
              [{"task": "add", "prompt": p, "answer": "5", "completion": f"sft says {i}",
                "correct": i == 0} for i, p in enumerate(PROMPTS)])
    write_run(root / "reward", "reward", {"model": str(sft), "method": "lora"},
              {"stage": "reward", "steps": 10, "final_loss": 0.55,
               "eval_before": {"eval/accuracy": 0.5}, "eval_after": {
                   "eval/accuracy": 0.725, "eval/pairs": 40}},
              curve(10, **{"train/loss": 0.7, "train/accuracy": 0.5, "train/margin": 0.1}))
    write_run(root / "dpo", "dpo", {"model": str(sft), "method": "lora", "task_eval_n": 40},
              {"stage": "dpo", "loss": "dpo", "steps": 10, "final_loss": 0.61,
               "eval_after": {"eval/rewards/accuracy": 0.675, "eval/pairs": 40},
               "kl": {"kl/token": 0.0123, "kl/sequence": 0.2},
               "task_accuracy_before": {"convert": 0.475, "compare": 0.45},
               "task_accuracy_after": {"convert": 0.4, "compare": 0.45}},
              curve(10, **{"train/loss": 0.69, "train/rewards/accuracy": 0.5,
                           "train/rewards/margin": 0.0, "eval/loss": 0.68}))
    write_run(root / "gen", "generate", {"model": "smollm2-135m-instruct",
                                         "strategy": "greedy"},
              {"stage": "generate", "strategy": "greedy", "prompts": 2, "new_tokens": 40,
               "seconds": 2.5, "tokens_per_s": 16.0},
              samples=[{"prompt": [{"role": "user", "content": p}], "completion": "gen " + p}
                       for p in PROMPTS])
    ev = root / "evaluate"
    write_run(ev, "evaluate", {"model": "x"}, {"stage": "evaluate", "models": ["base", "sft"]})
    for label, ppl in (("base", 31.2), ("sft", 28.75)):
        (ev / "models" / label).mkdir(parents=True)
        (ev / "models" / label / "eval.json").write_text(json.dumps(
            {"schema": "lmlab.eval/1", "model": label, "label": label,
             "metrics": {"ppl:x/perplexity": ppl, "tasks/accuracy": 0.25}}))
    (ev / "comparison.json").write_text(json.dumps({
        "schema": "lmlab.eval/1", "columns": ["ppl:x/perplexity", "tasks/accuracy"],
        "table": {"base": {"ppl:x/perplexity": 31.2, "tasks/accuracy": 0.1},
                  "sft": {"ppl:x/perplexity": 28.75, "tasks/accuracy": 0.4625}},
        "pairwise": [{"a": "sft", "b": "base", "set": "tasks", "judge": "reward", "n": 32,
                      "wins": 20, "ties": 2, "losses": 10, "win_rate": 0.65625,
                      "ci95": [0.5, 0.8]}]}))
    write_run(root / "bench", "bench", {"model": "smollm2-135m-instruct", "what": "generate"},
              {"stage": "bench", "greedy_tokens_per_s": 14.45})
    (root / "bench" / "bench.json").write_text(json.dumps({"what": "generate", "rows": [
        {"strategy": "greedy", "batch_size": 8, "tokens_per_s": 53.49, "ttft_ms": 212.3}],
        "quality": [{"strategy": "beam", "prompts": 16, "accuracy": 0.4375, "distinct_2": 0.613,
                     "mean_new_tokens": 21.4, "ended": 0.875}]}))
    write_run(root / "killed", "sft", {"model": "tiny:llama"}, None, curve(3, **{
        "train/loss": 9.0}))
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "sft.json").write_text(json.dumps({"command": "python bench.py", "results": {
        "lora": {"tokens_per_s": 106.77}}}))
    return tmp_path, root, bench


def test_report_has_every_section_run_and_no_urls(fixture_runs):
    tmp, root, bench = fixture_runs
    result = build_report([tmp / "runs", bench / "sft.json"], tmp / "out")
    html = (tmp / "out" / "report.html").read_text()
    md = (tmp / "out" / "report.md").read_text()
    for name in ("sft", "reward", "dpo", "gen", "evaluate", "bench", "killed"):
        assert f">{name}<" in html and f"| {name} |" in md, name
    for s in SECTIONS:
        assert f">{s}</h2>" in html and f"## {s}" in md
    links = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert links and all(x.startswith(("#", "data:image/png;base64,")) for x in links)
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    assert "://" not in text and "url(" not in text and "@import" not in text
    assert "<script" not in html and "<link" not in html
    # one embedded PNG per run that logged curves, and the same PNGs beside report.md
    assert html.count('src="data:image/png;base64,') == 4
    assert len(list((tmp / "out" / "plots").glob("*.png"))) == 4
    assert "killed (sft) has not finished" in " ".join(result["findings"])
    assert "106.8" in html and "53.49" in html and "212.3" in html  # benchmark numbers
    assert "What each strategy does to the text: bench" in md
    assert "| beam | 16 | 0.4375 | 0.613 | 21.4 | 0.875 |" in md


def test_table_numbers_equal_the_sources(fixture_runs):
    tmp, root, _ = fixture_runs
    runs, _, _ = discover([root])
    t = task_comparison(runs)
    rows = {r[0]: dict(zip(t.columns, r)) for r in t.rows}
    assert acc_value(rows["smollm2-135m-instruct (input of sft)"]["compare"]) == 0.225
    assert acc_value(rows["sft"]["convert"]) == 0.475 and acc_value(rows["dpo"]["convert"]) == 0.4
    # recorded as bare numbers: the interval comes from the count (9 of 40 prompts)
    assert rows["smollm2-135m-instruct (input of sft)"]["compare"]["correct"] == 9
    assert rows["sft"]["convert"]["n"] == 40
    assert rows["sft"]["measured in"] == "sft (after), reward (before)" or \
        "dpo (before)" in rows["sft"]["measured in"]
    assert acc_value(rows["dpo"]["mean"]) == pytest.approx((0.4 + 0.45) / 2)
    build_report([root], tmp / "out")
    html = (tmp / "out" / "report.html").read_text()
    md = (tmp / "out" / "report.md").read_text()
    # runs from before the held-out splits: in-template numbers only, with the interval their
    # count gives; convert, compare, mean
    ci = r"\[\d+\.\d–\d+\.\d\]"
    assert re.search(rf"\| sft \| in-template \| 47\.5% {ci} n=40 \| 45\.0% {ci} n=40 \| "
                     rf"46\.2% {ci} n=80 \|", md)
    assert re.search(rf"\| dpo \| in-template \| 40\.0% {ci} n=40 \| 45\.0% {ci} n=40 \| "
                     rf"42\.5% {ci} n=80 \|", md)
    for value, kind in ((28.75, "num"), (31.2, "num"), (0.65625, "pct"), (0.725, "pct"),
                        (0.0123, "num"), (0.4321, "num"), (16.0, "num")):
        assert fmt(value, kind) in html, (value, kind)
        assert fmt(value, kind) in md, (value, kind)
    assert "65.6%" in md  # the pairwise win rate
    assert "| tasks/accuracy | 10.0% | 46.2% |" in md  # evaluate: metrics x models


def test_findings_say_plainly_what_did_not_improve(fixture_runs):
    tmp, root, _ = fixture_runs
    result = build_report([root], tmp / "out")
    text = "\n".join(result["findings"])
    assert "sft (sft) raised mean in-template task accuracy over its input model: 11.2% → 46.2%" \
        in text
    assert "dpo (dpo) did not raise mean in-template task accuracy" in text
    # an interval from the count: 29 of 40 pairs
    assert re.search(r"held-out pairwise accuracy 72\.5% \[\d\d\.\d–\d\d\.\d\] on 40 pairs", text)
    # dpo's implied-reward accuracy too: 27 of 40 pairs
    assert re.search(r"implied-reward accuracy 67\.5% \[\d\d\.\d–\d\d\.\d\] on 40 pairs", text)
    lines = headline_lines(result)
    assert any(line.strip().startswith("sft, in-template: convert 47.5% [") and
               "compare 45.0% [" in line for line in lines)


def test_samples_side_by_side(fixture_runs):
    tmp, root, _ = fixture_runs
    build_report([root], tmp / "out")
    md = (tmp / "out" / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| What is 2 + 3?"))
    assert "sft says 0 ✓" in row and "gen What is 2 + 3?" in row  # chat prompts match text


def test_cli_and_errors(fixture_runs, capsys):
    tmp, root, _ = fixture_runs
    out = tmp / "cli"
    assert main(["report", f"runs={root / 'sft'},{root / 'dpo'}", f"output_dir={out}"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stage"] == "report" and len(summary["runs"]) == 2
    assert main(["report", f"runs={tmp / 'nope'}", f"output_dir={out}"]) == 1
    assert "does not exist" in capsys.readouterr().err
    empty = tmp / "empty"
    empty.mkdir()
    assert main(["report", f"runs={empty}", f"output_dir={out}"]) == 1
    assert main(["report", str(root)]) == 0  # positional: one folder of runs -> <it>/report
    assert (root / "report" / "report.html").exists()
    # the report's own folder is never read as a run
    assert main(["report", f"runs={tmp}", f"output_dir={out}"]) == 0
    assert "report" not in [r.stage for r in discover([tmp], exclude=out)[0]]


def test_online_rl_and_distill_runs(tmp_path):
    root = tmp_path / "runs"
    write_run(root / "grpo", "grpo", {"model": "base-m", "eval_n": 8},
              {"stage": "grpo", "updates": 5, "reward_first": 0.125, "reward_last": 0.375,
               "kl_last": 0.0042, "stopped_early": "KL 9.000 > kl_stop 8.0 at update 5",
               "warnings": ["mode collapse suspected at update 4: 75% of the rollout's "
                            "responses are the same text"],
               "eval_before": {"eval/accuracy": 0.25, "eval/accuracy/compare": 0.25},
               "eval_after": {"eval/accuracy": 0.5, "eval/accuracy/compare": 0.5}},
              curve(4, **{"train/loss": 0.1, "train/kl": 0.001, "train/reward/mean": 0.2}))
    write_run(root / "distill", "distill", {"model": "teacher-m", "eval_n": 8},
              {"stage": "distill", "steps": 3, "final_loss": 0.02,
               "teacher_accuracy": {"eval/accuracy/compare": 0.625},
               "student_accuracy": {"eval/accuracy/compare": 0.375}})
    result = build_report([root], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "rollout reward 0.125 → 0.375 (improved); KL 0.0042" in md
    assert "| grpo | in-template | 50.0% [12.5–87.5] n=8 | 50.0% [12.5–87.5] n=8 |" in md
    assert "| base-m (input of grpo) | in-template | 25.0% [0.0–62.5] n=8 |" in md
    assert "the student's mean held-out task accuracy is 37.5%, the teacher's 62.5%" in \
        " ".join(result["findings"])
    assert "grpo (grpo) stopped early: KL 9.000 > kl_stop 8.0 at update 5." in result["findings"]
    assert ("grpo (grpo) warning: mode collapse suspected at update 4: 75% of the rollout's "
            "responses are the same text.") in result["findings"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("data:image/png") == 1  # grpo logged curves, distill did not


def _acc(correct, n, lo, hi):
    return {"accuracy": correct / n, "n": n, "correct": correct, "ci95": [lo, hi]}


def _gain(before, after, n, lo, hi):
    return {"before": before, "after": after, "gain": after - before, "n": n, "ci95": [lo, hi]}


def test_held_out_splits_with_intervals_and_plain_words(tmp_path):
    """A run with in-template, held-out and out-of-range numbers: both accuracies with their
    intervals and n, and the report says in words where the gain does not survive."""
    root = tmp_path / "runs"
    ev = {"test": {"convert": _acc(0, 40, 0, 0), "compare": _acc(4, 40, .025, .2),
                   "mean": _acc(4, 80, .0125, .1)},
          "heldout": {"convert": _acc(0, 40, 0, 0), "compare": _acc(8, 40, .075, .325),
                      "mean": _acc(8, 80, .0375, .1625)},
          "range": {"convert": _acc(0, 40, 0, 0), "compare": _acc(10, 40, .125, .375),
                    "mean": _acc(10, 80, .075, .2)}}
    after = {"test": {"convert": _acc(22, 40, .4, .7), "compare": _acc(30, 40, .6, .875),
                      "mean": _acc(52, 80, .55, .75)},
             "heldout": {"convert": _acc(0, 40, 0, 0), "compare": _acc(20, 40, .35, .65),
                         "mean": _acc(20, 80, .15, .35)},
             "range": {"convert": _acc(1, 40, 0, .075), "compare": _acc(11, 40, .15, .425),
                       "mean": _acc(12, 80, .075, .225)}}
    gain = {"test": {"convert": _gain(0, .55, 40, .4, .7), "compare": _gain(.1, .75, 40, .5, .8),
                     "mean": _gain(.05, .65, 80, .525, .75)},
            "heldout": {"convert": _gain(0, 0, 40, 0, 0), "compare": _gain(.2, .5, 40, .15, .45),
                        "mean": _gain(.1, .25, 80, .075, .225)},
            "range": {"convert": _gain(0, .025, 40, 0, .075),
                      "compare": _gain(.25, .275, 40, -.15, .2),
                      "mean": _gain(.125, .15, 80, -.075, .125)}}
    write_run(root / "sft", "sft", {"model": "base-m", "eval_n": 40},
              {"stage": "sft", "steps": 40, "eval_before": {"eval/accuracy": .05},
               "eval_after": {"eval/accuracy": .65, "eval/accuracy/convert": .55,
                              "eval/accuracy/compare": .75},
               "task_eval_before": ev, "task_eval_after": after, "task_gain": gain})
    result = build_report([root], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| sft | in-template | 55.0% [40.0–70.0] n=40 | 75.0% [60.0–87.5] n=40 | " \
           "65.0% [55.0–75.0] n=80 |" in md
    assert "| sft | held-out template | 0.0% [0.0–0.0] n=40 | 50.0% [35.0–65.0] n=40 |" in md
    assert "| sft | out-of-range | 2.5% [0.0–7.5] n=40 |" in md
    assert "| base-m (input of sft) | held-out template | 0.0% [0.0–0.0] n=40 |" in md
    text = "\n".join(result["findings"])
    assert "sft (sft) raised mean in-template task accuracy over its input model: 5.0% → 65.0% " \
           "(convert, compare; 80 prompts, gain +60.0 pts, 95% CI [+52.5, +75.0])" in text
    assert "sft (sft) on held-out template prompts: 10.0% → 25.0%, gain +15.0 pts (95% CI " \
           "[+7.5, +22.5], 80 prompts)." in text
    # the mean survives held-out phrasing, convert's gain does not; out of range nothing does
    assert "sft's in-template gain does NOT survive held-out phrasing on convert (+0.0 pts, " \
           "95% CI [+0.0, +0.0])." in text
    assert "sft's in-template gain (+60.0 pts) does NOT survive out-of-range numbers: +2.5 pts" \
           in text
    lines = headline_lines(result)
    assert any(x.strip().startswith("sft, held-out template: convert 0.0% [0.0–0.0] n=40, "
                                    "compare 50.0% [35.0–65.0] n=40") for x in lines)
    runs_md = md[md.index("## Runs"):]
    assert "task accuracy 5.0% → 65.0% (improved); held-out template 10.0% → 25.0% (improved)" \
        in runs_md


def test_evaluate_intervals_and_flagged_contamination(tmp_path):
    ev = tmp_path / "runs" / "evaluate"
    write_run(ev, "evaluate", {"model": "x"}, {"stage": "evaluate", "models": ["sft"]})
    (ev / "models" / "sft").mkdir(parents=True)
    (ev / "models" / "sft" / "eval.json").write_text(json.dumps(
        {"schema": "lmlab.eval/1", "model": "sft", "label": "sft",
         "metrics": {"tasks/accuracy": 0.5, "tasks/heldout_accuracy": 0.25}}))
    (ev / "comparison.json").write_text(json.dumps({
        "schema": "lmlab.eval/1", "columns": ["tasks/accuracy", "tasks/heldout_accuracy"],
        "table": {"sft": {"tasks/accuracy": 0.5, "tasks/heldout_accuracy": 0.25}},
        "intervals": {"sft": {"tasks/accuracy": {"ci95": [0.35, 0.65], "n": 40},
                              "tasks/heldout_accuracy": {"ci95": [0.125, 0.4], "n": 40}}},
        "pairwise": [],
        "contamination": [
            {"model": "sft", "set": "tasks/test", "n": 13, "items": 40, "overlapping": 0,
             "share": 0.0, "flagged": False, "train_data": ["sft (sft): x.jsonl (9 rows)"]},
            {"model": "sft", "set": "tasks/heldout", "n": 13, "items": 40, "overlapping": 6,
             "share": 0.15, "flagged": True, "train_data": ["sft (sft): x.jsonl (9 rows)"]}]}))
    result = build_report([tmp_path / "runs"], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| tasks/accuracy | 50.0% [35.0–65.0] n=40 |" in md
    assert "| tasks/heldout_accuracy | 25.0% [12.5–40.0] n=40 |" in md
    assert "| sft | tasks/heldout | 40 | 6 | 15.0% | YES |" in md
    assert ("CONTAMINATION (evaluate): 6 of 40 items of tasks/heldout share a word 13-gram "
            "with sft's training data") in " ".join(result["findings"])


def test_runs_table_names_an_agents_environment_not_a_language_model(tmp_path):
    from lmlab.report.collect import RunData
    from lmlab.report.tables import runs_table

    agent = RunData(tmp_path, "agent", {"model": "smollm2-135m-instruct", "algo": "dqn",
                                        "env": "CartPole-v1"},
                    {"stage": "agent", "algo": "dqn", "env": "CartPole-v1"}, label="agent")
    sft = RunData(tmp_path, "sft", {"model": "smollm2-135m-instruct", "method": "lora"}, {},
                  label="sft")
    rows = runs_table([agent, sft]).rows
    assert rows[0][2:4] == ["CartPole-v1", "dqn"]
    assert rows[1][2:4] == ["smollm2-135m-instruct", "lora"]
