"""The vision benchmark scripts still run against the current stage (smoke settings on the
8x8 digits: their timings are not checked, they are not measurements)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}


def _run(*argv):
    out = subprocess.run([sys.executable, *argv], cwd=ROOT, env=ENV, capture_output=True,
                         text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_bench_vision_side_by_side(tmp_path):
    stdout = _run("benchmarks/bench_vision.py", "--data", "digits", "--steps", "4", "--warmup",
                  "1", "--batch", "16", "--threads", "1", "--no-lock", "--out", str(tmp_path / "v.json"))
    r = json.loads((tmp_path / "v.json").read_text())["results"]
    assert r["lmlab_fp32"]["images_per_s"] > 0 and r["reference"]["images_per_s"] > 0
    assert r["lmlab_fp32"]["precision"] == "fp32"  # the fp32-vs-fp32 row really is fp32
    assert r["speedup_fp32"] > 0 and r["speedup_auto"] > 0
    for row in ("| lmlab dtype=fp32 |", "| lmlab dtype=auto |", "| reference (DataLoader) |"):
        assert row in stdout, row


@pytest.mark.slow
def test_bench_coresets_grid(tmp_path):
    # equal steps: the full set trains half the epochs of the half subsets
    stdout = _run("benchmarks/bench_coresets.py", "--data", "digits", "--epochs", "0.5",
                  "--full-epochs", "0.25", "--fractions", "0.5", "--methods", "random",
                  "facility", "trimmed", "facility-gradient", "--seeds", "0",
                  "--set", "batch_size=32", "widths=[8,16]", "subset_proxy_epochs=0.2",
                  "--runs", str(tmp_path / "runs"), "--no-lock", "--out", str(tmp_path / "c.json"))
    out = json.loads((tmp_path / "c.json").read_text())
    assert {(r["method"], r["fraction"]) for r in out["table"]} == {
        ("full", 1.0), ("random", 0.5), ("facility", 0.5), ("trimmed", 0.5),
        ("facility-gradient", 0.5)}
    steps = {r["method"]: r["steps"] for r in out["runs"]}
    # 1,438 training images: full 0.25 x (1438 // 32) = 11 steps of 32, a half
    # 0.5 x (719 // 32) = 11
    assert steps["full"] == steps["random"] == steps["trimmed"] == 11
    assert (tmp_path / "c.png").is_file() and "| facility | 50% |" in stdout
