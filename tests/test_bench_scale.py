"""benchmarks/bench_plan.py and bench_fsdp.py still run against the current code (smoke settings
on the tiny model; nothing measured is checked but the JSON's shape and the planner's own
number)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, out: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT / "src")}
    p = subprocess.run([sys.executable, f"benchmarks/{script}", "--smoke", "--out", str(out)],
                       check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_bench_plan_smoke(tmp_path):
    from lmlab.plan import GB, SHAPES, Setup, memory

    r = _run("bench_plan.py", tmp_path / "plan.json")["rows"][0]
    s = Setup(seq_len=r["seq"], batch=r["batch"], trained_fraction=(r["seq"] - 1) / r["seq"])
    assert r["predicted_gib"] == pytest.approx(memory(SHAPES["tiny"], s)["total"] / GB)
    assert r["measured_gib"] > 0


@pytest.mark.slow
def test_bench_fsdp_smoke(tmp_path):
    r = _run("bench_fsdp.py", tmp_path / "fsdp.json")
    assert [x["strategy"] for x in r["rows"]] == ["ddp", "fsdp"]
    assert all(x["step_s"] > 0 and x["param_optim_gib_per_rank"] > 0 for x in r["rows"])
