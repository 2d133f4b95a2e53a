"""The pretraining benchmark scripts still run (tiny smoke settings: timings not checked)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def test_bench_pretrain_same_model_side_by_side(tmp_path):
    out_json = tmp_path / "pretrain.json"
    out = subprocess.run([sys.executable, "benchmarks/bench_pretrain.py", "--preset", "tiny",
                          "--steps", "3", "--warmup", "1", "--data-chars", "20000",
                          "--variants", "fp32", "--threads", "1", "--lock",
                          str(tmp_path / "lock"), "--out", str(out_json)], check=False,
                         cwd=ROOT, env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out_json.read_text())["results"]
    assert r["same_model"]["same"], r["same_model"]  # the reference is the same GPT-2
    assert r["lmlab"]["fp32"]["tokens_per_s"] > 0 and r["reference"]["tokens_per_s"] > 0
    assert r["lmlab"]["fp32"]["first_step_s"] > 0  # the compile variants' cold compile
    assert "| reference (nanoGPT-style) |" in out.stdout


@pytest.mark.slow
def test_paradigms_harness_tiny(tmp_path):
    out_json = tmp_path / "paradigms.json"
    out = subprocess.run([sys.executable, "benchmarks/pretrain_paradigms.py", "--set",
                          "preset=tiny", "max_steps=2", "data_chars=60000", "eval_chars=6000",
                          "eval_every=0", "sample_tokens=0", "--probe-n", "40", "--probe-seeds",
                          "0", "--samples", "2", "--runs",
                          str(tmp_path / "runs"), "--lock", str(tmp_path / "lock"), "--out",
                          str(out_json)], check=False, cwd=ROOT, env=ENV,
                         capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    cells = json.loads(out_json.read_text())["cells"]
    assert [c["objective"] for c in cells] == ["clm", "mlm", "span", "prefix", "electra"]
    assert all(0.0 <= c["probe_accuracy"] <= 1.0 for c in cells)
    for c in cells:  # every task for the trained and the untrained model, one probe seed
        for key in ("probe", "untrained_probe"):
            assert {t: len(c[key][t]["accuracy"]) for t in ("raw", "plain", "spelling")} == {
                "raw": 1, "plain": 1, "spelling": 1}
        assert (Path(c["run"]) / "probe.json").is_file()
    assert [c.get("known_word_rate") is not None for c in cells] == [
        True, False, False, True, False]  # the generating objectives only


@pytest.mark.slow
def test_text_coresets_harness_tiny(tmp_path):
    out_json = tmp_path / "coresets.json"
    out = subprocess.run([sys.executable, "benchmarks/bench_text_coresets.py", "--rows", "40",
                          "--encoder", "tiny:bert", "--fractions", "0.5", "--seeds", "0", "1",
                          "--set", "max_steps=2", "preset=tiny", "--runs", str(tmp_path / "runs"),
                          "--lock", str(tmp_path / "lock"), "--out", str(out_json)],
                         check=False, cwd=ROOT, env=ENV, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads(out_json.read_text())["results"]
    assert [(r["method"], r["seed"]) for r in rows] == [
        ("full", 0), ("kcenter", 0), ("facility", 0), ("random", 0), ("random", 1)]
    assert [r["kept"] for r in rows] == [40, 20, 20, 20, 20]
    assert all((Path(r["run"]) / "coreset.json").is_file() for r in rows)
    assert "| random | 50% | 2 |" in out.stdout
