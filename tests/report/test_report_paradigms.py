"""The report's paradigms and text-coreset tables read probe.json / coreset.json beside a
pretrain run's summary.json."""

import json

import yaml


def _run(folder, summary, extra: dict):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"stage": "pretrain"}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"step": 10, "train/loss": 3.0}, {"step": 10, "eval/loss": 2.5},
        {"step": 20, "eval/loss": 2.25}]))
    (folder / "summary.json").write_text(json.dumps({"stage": "pretrain", "model": "scratch",
                                                     **summary}))
    for name, data in extra.items():
        (folder / name).write_text(json.dumps(data))


def test_paradigm_and_coreset_tables(tmp_path):
    from lmlab.report import build_report

    probe = {"probe": {"plain": {"accuracy": [0.625, 0.675]}, "raw": {"accuracy": [0.875]},
                       "spelling": {"accuracy": [0.9375]}},
             "untrained_probe": {"plain": {"accuracy": [0.5, 0.55]},
                                 "raw": {"accuracy": [0.8]}, "spelling": {"accuracy": [0.25]}},
             "untrained_known_word_rate": 0.0625,
             "input_tokens_per_step": 1024, "known_word_rate": 0.4375}
    _run(tmp_path / "runs" / "clm", {"objective": "clm", "position": "rope", "steps": 20,
                                     "val": {"loss": 2.25, "bits_per_byte": 3.125}},
         {"probe.json": probe})
    for name, method, bpb in (("r0", "random", 3.0), ("r1", "random", 3.5),
                              ("kc", "kcenter", 3.25)):
        _run(tmp_path / "runs" / name, {"objective": "clm", "position": "rope", "steps": 20,
                                        "val": {"loss": 2.0, "bits_per_byte": bpb}},
             {"coreset.json": {"method": method, "fraction": 0.5, "kept": 7,
                               "cover": {"radius": 0.75}}})
    build_report([tmp_path / "runs"], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    row = next(ln for ln in md.splitlines() if ln.startswith("| clm |") and "1,024" in ln)
    # means over probe seeds: plain 65.0%, untrained plain 52.5%; raw 87.5% / 80.0%
    assert "| 93.8% | 25.0% | 65.0% | 52.5% | 87.5% | 80.0% | 43.8% | 6.2% |" in row
    assert "3.125" in row
    rand = next(ln for ln in md.splitlines() if ln.startswith("| random | 50.0%"))
    assert "| 2 |" in rand and "3.25" in rand and "3.5" in rand  # 2 seeds, mean 3.25, max 3.5
    assert (tmp_path / "out" / "plots" / "pretrain-paradigm-curves.png").is_file()
