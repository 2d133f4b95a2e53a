"""benchmarks/bench_dtype.py still runs against the stage code (a smoke run on the tiny model:
its timings are not checked, they are not measurements)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # three short training runs in a fresh interpreter: ~12 s of CPU
def test_bench_dtype_runs_fp32_auto_and_bf16_side_by_side(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "LMLAB_AUTO_DTYPE": "bf16"}  # what auto gives on a fast-bf16 CPU, on any CPU
    out_json = tmp_path / "dtype.json"
    out = subprocess.run([sys.executable, "benchmarks/bench_dtype.py", "--model", "tiny:llama",
                          "--steps", "2", "--warmup", "1", "--batch", "2", "--rows", "8",
                          "--threads", "1", "--modes", "sft-lora", "--out", str(out_json),
                          "--dtypes", "fp32", "auto", "bf16", "--grad-accum", "2"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out_json.read_text())["results"]["sft-lora"]
    assert r["fp32"]["resolved"] == "fp32" and r["auto"]["resolved"] == "bf16 autocast"
    assert len(r["fp32"]["losses"]) == len(r["auto"]["losses"]) == 2
    assert r["loss_gap_max"] == max(abs(a - b) for a, b in zip(r["auto"]["losses"],
                                                               r["fp32"]["losses"]))
    assert 0 < r["fp32"]["mfu"] < 1 and r["speedup"] > 0
    assert r["bf16"]["resolved"] == "bf16" and set(r["vs_fp32"]) == {"auto", "bf16"}
    assert r["vs_fp32"]["auto"]["speedup"] == r["speedup"]
    assert "| sft-lora | auto | bf16 autocast |" in out.stdout
    assert "| sft-lora | bf16 | bf16 |" in out.stdout
