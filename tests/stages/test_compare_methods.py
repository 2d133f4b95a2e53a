"""`lmlab compare-methods` on the tiny model: one sft run per method on the same budget, the
table's numbers taken from those runs, and the report's section and plot."""

import json

import pytest
import yaml

from lmlab.cli import main
from lmlab.stages import STAGES

ARGS = ["model=tiny:llama", "data=task:add", "max_steps=2", "batch_size=4", "lr=1e-2",
        "warmup_steps=0", "progress=false", "eval_n=2", "eval_max_new_tokens=3",
        "num_virtual_tokens=4", "adapter_dim=8"]


def test_the_command_is_hyphenated():
    assert "compare-methods" in STAGES and "compare_methods" not in STAGES


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("cm") / "run"
    rc = main(["compare-methods", *ARGS, f"output_dir={out}", "methods=[adapter,ia3]",
               "isolate=false"])
    assert rc == 0
    return out


def test_each_method_gets_the_same_budget_and_one_row(compared):
    summary = json.loads((compared / "summary.json").read_text())
    assert [r["method"] for r in summary["methods"]] == ["adapter", "ia3"]
    assert yaml.safe_load((compared / "config.yaml").read_text())["stage"] == "compare-methods"
    for row in summary["methods"]:
        sub = compared / row["method"]
        cfg = yaml.safe_load((sub / "config.yaml").read_text())
        assert (cfg["stage"], cfg["method"], cfg["max_steps"], cfg["seed"]) == (
            "sft", row["method"], 2, 0)
        assert cfg["eval_splits"] == ["heldout"] and cfg["merge_on_save"] is False
        s = json.loads((sub / "summary.json").read_text())
        assert row["trainable_params"] == s["trainable_params"]
        assert row["acc_before"] is not None and row["acc_after"] is not None
        assert row["peak_rss_mb"] is None and row["train_rss_mb"] is None  # in-process
        steps = [json.loads(x)["train/step_s"] for x in
                 (sub / "metrics.jsonl").read_text().splitlines() if "train/step_s" in x]
        assert row["s_per_step"] == pytest.approx(steps[1])  # the first step left out
    by = {r["method"]: r for r in summary["methods"]}
    # tiny:llama (D=64, I=128, KV=32, 2 layers): Houlsby r=8: 4 x (64*8+8 + 8*64+64);
    # IA3: (32 + 32 + 128) x 2
    assert by["adapter"]["trainable_params"] == 4 * (64 * 8 + 8 + 8 * 64 + 64)
    assert by["ia3"]["trainable_params"] == (32 + 32 + 128) * 2
    # saved weights: adapter fp32 parameters + the safetensors header; IA3 saved unmerged
    assert by["adapter"]["adapter_mb"] * 2**20 >= 4 * 4 * (64 * 8 + 8 + 8 * 64 + 64)
    assert (compared / "ia3" / "final" / "adapter_config.json").is_file()
    csv = (compared / "methods.csv").read_text().splitlines()
    assert csv[0].startswith("method,trainable_params") and len(csv) == 3
    assert "| adapter |" in (compared / "methods.md").read_text()


def test_resume_keeps_finished_methods(compared):
    before = (compared / "adapter" / "summary.json").stat().st_mtime_ns
    rc = main(["compare-methods", *ARGS, f"output_dir={compared}", "methods=[adapter,ia3]",
               "isolate=false", "resume=auto"])
    assert rc == 0
    assert (compared / "adapter" / "summary.json").stat().st_mtime_ns == before


def test_report_draws_the_table_and_accuracy_vs_parameters(compared, tmp_path):
    from lmlab.report import build_report

    build_report([compared], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Fine-tuning methods" in md
    row = next(line for line in md.splitlines() if line.startswith("| adapter"))
    assert "4,384" in row  # 4 x (64*8 + 8 + 8*64 + 64)
    assert list((tmp_path / "out" / "plots").glob("methods00-*.png"))


@pytest.mark.slow
def test_isolated_processes_measure_their_own_peak_memory(tmp_path):
    out = tmp_path / "run"
    assert main(["compare-methods", *ARGS, f"output_dir={out}", "methods=[prompt,full]"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    base = summary["baseline_rss_mb"]
    assert base > 100  # torch + the model: a process's peak RSS, in MB
    assert json.loads((out / "baseline" / "summary.json").read_text())["steps"] == 0
    for row in summary["methods"]:
        rss = json.loads((out / row["method"] / "rss.json").read_text())["peak_rss_mb"]
        assert row["peak_rss_mb"] == rss and row["train_rss_mb"] == round(rss - base, 1)
