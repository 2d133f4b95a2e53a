"""benchmarks/bench_agents.py still runs against the current code (a smoke run on tiny budgets:
its timings are not checked, they are not measurements)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_bench_agents_smoke():
    pytest.importorskip("stable_baselines3")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "benchmarks/bench_agents.py", "--algos", "ppo",
                          "--smoke", "--episodes", "1", "--threads", "1"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| ppo | CartPole-v1 | 512 | lmlab |" in out.stdout
    assert "| ppo | CartPole-v1 | 512 | sb3 |" in out.stdout and "lmlab / sb3" in out.stdout
