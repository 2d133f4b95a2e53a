"""The on-demand benchmark scripts still run against the current stage code (a smoke run on the
tiny model: no numbers are checked, they are not measurements)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_rl_runs_on_the_tiny_model():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "benchmarks/bench_rl.py", "--model", "tiny:llama",
                          "--steps", "2", "--warmup", "1", "--threads", "1", "--sides", "lmlab",
                          "--no-pieces"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| lmlab |" in out.stdout
