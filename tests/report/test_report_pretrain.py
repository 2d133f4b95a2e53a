"""The report's pretraining section reads pretrain runs' summary.json."""

import json

import yaml


def _run(folder, summary):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"stage": "pretrain",
                                                        "model": summary["model"]}))
    (folder / "metrics.jsonl").write_text(json.dumps({"step": 1, "train/loss": 3.0}) + "\n")
    (folder / "summary.json").write_text(json.dumps(summary))


def test_pretraining_section_rows_and_continued_table(tmp_path):
    from lmlab.report import build_report

    _run(tmp_path / "runs" / "a", {"stage": "pretrain", "model": "scratch", "objective": "clm",
                                   "position": "rope", "preset": "nano", "params": 800000,
                                   "steps": 10, "val": {"loss": 1.5, "bits_per_byte": 2.125}})
    _run(tmp_path / "runs" / "b", {
        "stage": "pretrain", "model": "tiny:llama", "objective": "clm", "position": "model",
        "steps": 5, "val": {"loss": 2.0},
        "before": {"val": {"bits_per_byte": 3.5}, "general": {"bits_per_byte": 1.25}},
        "after": {"val": {"bits_per_byte": 2.75}, "general": {"bits_per_byte": 1.5}}})
    build_report([tmp_path / "runs"], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Pretraining" in md and "2.125" in md and "nano" in md
    assert "Continued pretraining" in md
    row = next(line for line in md.splitlines() if "tiny:llama" in line and "3.5" in line)
    assert "2.75" in row and "1.25" in row and "1.5" in row
