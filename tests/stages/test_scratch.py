"""`lmlab scratch`: every lab runs on small settings, writes the run folder, and its headline
numbers say what the twins do (AND/OR learned, XOR not by a perceptron but by the network,
the layers equal to torch)."""

import json

from lmlab.cli import main

SMALL = ["xor_steps=600", "xor_seeds=2", "moons=8", "moons_steps=3", "width=3"]


def test_all_labs_write_the_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["scratch", *SMALL, f"output_dir={out}"]) == 0
    printed = capsys.readouterr().out
    assert "perceptron XOR: accuracy" in printed and "never converges" in printed
    s = json.loads((out / "summary.json").read_text())
    assert s["labs"] == ["perceptron", "xor", "micrograd", "layers"]
    p = s["perceptron"]
    assert p["and"]["accuracy"] == p["or"]["accuracy"] == 1.0 and p["xor"]["accuracy"] < 1.0
    assert p["separable"]["updates"] <= p["separable"]["novikoff_bound"]
    assert s["xor"]["accuracy"] == 1.0 and set(s["xor"]["solved_of_seeds"]) == {"2", "4", "8"}
    assert s["micrograd"]["parameters"] == 3 * 3 + 3 * 4 + 4  # 2-3-3-1
    assert len(s["layers"]) == 5
    for name, r in s["layers"].items():
        assert max(r["out_vs_torch"], r["grad_vs_torch"]) < 1e-12, name
        assert r["grad_vs_numeric"] < 1e-7, name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    keys = set().union(*rows)
    assert {"train/xor_loss", "train/moons_loss", "train/perceptron_and_mistakes"} <= keys
    assert sum("train/moons_loss" in r for r in rows) == 3


def test_one_lab_and_the_default_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["scratch", "lab=perceptron"]) == 0
    s = json.loads((tmp_path / "runs/scratch-perceptron/summary.json").read_text())
    assert s["labs"] == ["perceptron"] and "xor" not in s
