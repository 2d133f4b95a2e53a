"""SIGKILL at 20 seeded random points of a training run (during a step, while a checkpoint's
state.pt is half written, after it is written but before the rename, before old checkpoints are
pruned), each followed by ``resume=auto``: no half-written checkpoint is ever visible or loaded,
and the run ends with exactly the weights and losses of a run that was never killed.

The kills are real (``kill -9`` of a ``python -m lmlab sft`` child), placed by
``LMLAB_KILL_AT=<point>:<n>`` (lmlab.train.killpoints): the n-th time the child passes the
named point it kills itself, so each kill lands at a known place and the test is repeatable.
"""

import json
import os
import random
import re
import subprocess
import sys

import pytest
import torch

from lmlab.train.checkpoint import read_checkpoint

STEPS, EVERY, KILLS = 60, 2, 20
ARGS = ["sft", "model=tiny:llama", "data=task:add", "data_limit=64", "eval_n=0", "batch_size=2",
        "max_len=64", f"max_steps={STEPS}", f"save_every={EVERY}", "keep_checkpoints=2",
        "progress=false", "resume=auto"]
# per point: how many passes a child makes through it before ``remaining`` steps are done
POINTS = {"step": lambda remaining: remaining,
          "checkpoint.write": lambda remaining: remaining // EVERY,
          "checkpoint.written": lambda remaining: remaining // EVERY,
          "checkpoint.prune": lambda remaining: remaining // EVERY}


def _lmlab(out, kill_at=None, log=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMLAB_KILL")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if kill_at:
        env["LMLAB_KILL_AT"] = kill_at
    if log:
        env["LMLAB_KILL_LOG"] = str(log)
    return subprocess.run([sys.executable, "-m", "lmlab", *ARGS, f"output_dir={out}"], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _checkpoints(out):
    """Every checkpoint a resume could pick, each checked whole: ``{step: folder}``."""
    folder = out / "checkpoints"
    found = {}
    for p in sorted(folder.iterdir()) if folder.exists() else []:
        m = re.fullmatch(r"step-(\d+)", p.name)
        if m and (p / "state.pt").exists():
            assert read_checkpoint(p)["step"] == int(m.group(1)), p  # never half written
            found[int(m.group(1))] = p
    return found


def _weights(out):
    from safetensors.torch import load_file

    return load_file(str(out / "final" / "model.safetensors"))


def _losses(out):
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["train/loss"]) for r in rows]


@pytest.mark.slow
def test_sigkill_anywhere_then_resume_equals_uninterrupted(tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "killed"
    done = _lmlab(ref, log=tmp_path / "points.log")
    assert done.returncode == 0, done.stderr
    passed = (tmp_path / "points.log").read_text().split()
    assert passed.count("step") == STEPS and passed.count("checkpoint.write") == STEPS // EVERY

    rng, kinds = random.Random(24), {}
    for i in range(KILLS):
        start = max(_checkpoints(out), default=0)
        # a point the child will reach: kinds alternate between steps and checkpoint writes
        point = "step" if i % 2 == 0 else rng.choice(list(POINTS)[1:])
        n = rng.randint(1, min(3, POINTS[point](STEPS - start)))
        p = _lmlab(out, kill_at=f"{point}:{n}")
        assert p.returncode == -9, f"kill {i} at {point}:{n} did not happen:\n{p.stderr}"
        if start:
            assert f"resumed from {out / 'checkpoints' / f'step-{start}'} (step {start})" \
                in p.stdout + p.stderr
        if point == "checkpoint.write":  # the kill came mid-write: a partial temp file is left
            assert any((out / "checkpoints").glob(".tmp-step-*/state.pt"))
        _checkpoints(out)
        kinds[point] = kinds.get(point, 0) + 1
    assert set(kinds) == set(POINTS), kinds  # every kind of point was hit

    last = _lmlab(out)
    assert last.returncode == 0, last.stderr
    assert not [p.name for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
    assert _losses(out) == _losses(ref)  # every step logged once, with the same loss
    a, b = _weights(ref), _weights(out)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
