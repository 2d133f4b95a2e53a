"""KTO under DDP: the reference point z0 is averaged over every rank's rows, so 2 processes x
batch b train exactly like 1 process x batch 2b (TRL gathers z0 across processes too)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _kto(tmp_path: Path, name: str, nproc: int, batch: int) -> list[dict]:
    data = tmp_path / "rows.jsonl"
    if not data.exists():
        data.write_text("".join(json.dumps(
            {"prompt": f"Say something about {i}.", "chosen": f"A kind word about {i}.",
             "rejected": f"Nothing {i}"}) + "\n" for i in range(16)))
    out = tmp_path / name
    args = ["dpo", "loss=kto", "model=tiny:llama", f"data={data}", f"output_dir={out}",
            "method=full", f"batch_size={batch}", "max_steps=2", "lr=3e-2", "warmup_steps=0",
            "progress=false", "eval_n=0", "kl_n=0", "task_eval_n=0", "save_every=0",
            "group_by_length=false"]
    launch = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
              "--standalone"] if nproc > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([*launch, "-m", "lmlab.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_kto_two_ranks_equal_one_rank_with_double_batch(tmp_path):
    two = _kto(tmp_path, "ddp", 2, 2)
    one = _kto(tmp_path, "single", 1, 4)
    # the test only means something when z0 is not clamped to 0 at some step
    assert max(m["train/kl"] for m in one) > 0.1
    for a, b in zip(two, one):
        assert a["train/kl"] == pytest.approx(b["train/kl"], rel=1e-4, abs=1e-5)
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-4, abs=1e-6)
