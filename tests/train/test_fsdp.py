"""strategy=fsdp in the shared loop: 2 gloo ranks under torchrun against one process at the same
global batch, sharded (DCP) checkpoints resumed on the same and on another number of ranks."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tolerance import approx_fp32, forward_terms, sum_terms

ROOT = Path(__file__).resolve().parents[2]


def _launch(out: Path, nproc: int, batch: int, strategy: str, steps: int, stop_after: int = 0,
            resume: str = "no") -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    pre = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           "--standalone"] if nproc > 1 else [sys.executable]
    args = [str(out), str(batch), strategy, str(steps), str(stop_after), resume]
    proc = subprocess.run([*pre, "-m", "tests.train.fsdp_worker", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


def _loss_tol(losses):
    """Losses summed over ranks in another order, then three AdamW steps of weights whose
    gradients were reduced in another order: the round-off of a forward of up to 20 tokens
    through tiny:llama, counted as one long sum (tests/tolerance.py)."""
    from lmlab.models import load_model

    terms = sum_terms(forward_terms(load_model("tiny:llama").config, context=20))
    return approx_fp32(losses, terms)


def _same_weights(a: dict, b: dict) -> None:
    # each weight's sum after AdamW steps; as in test_distributed, rel 1e-4 covers an update
    # whose sign flips where a gradient is ~0 and round-off decides it (lr 1e-3 per element)
    for name, v in b.items():
        assert a[name] == pytest.approx(v, rel=1e-4, abs=1e-4), name


def test_fsdp_two_ranks_match_one_process_at_the_same_global_batch(tmp_path):
    two = _launch(tmp_path / "fsdp", 2, 2, "fsdp", 3)
    one = _launch(tmp_path / "one", 1, 4, "ddp", 3)
    assert len(two["losses"]) == 3
    assert two["losses"] == _loss_tol(one["losses"])
    assert two["grad_norms"] == approx_fp32(one["grad_norms"], 1e4)
    _same_weights(two["weights"], one["weights"])
    # every rank wrote its own shard of the last checkpoint; rank 0 the rest
    step = tmp_path / "fsdp" / "checkpoints" / "step-3"
    assert len(list((step / "sharded").glob("*.distcp"))) == 2
    assert (step / "state.pt").is_file()


@pytest.mark.slow
def test_fsdp_resume_on_the_same_two_ranks_is_exact(tmp_path):
    full = _launch(tmp_path / "full", 2, 2, "fsdp", 4)
    _launch(tmp_path / "part", 2, 2, "fsdp", 4, stop_after=2)
    part = _launch(tmp_path / "part", 2, 2, "fsdp", 4, resume="auto")
    assert part["resumed_from"] == 2
    assert part["losses"] == full["losses"][2:]
    assert part["weights"] == full["weights"]


@pytest.mark.slow
@pytest.mark.parametrize("first,then", [(2, 1), (1, 2)])
def test_fsdp_checkpoint_reshards_to_another_rank_count(tmp_path, first, then):
    """Saved by ``first`` ranks, resumed by ``then`` ranks at the same global batch (4)."""
    full = _launch(tmp_path / "full", first, 4 // first, "fsdp", 4)
    _launch(tmp_path / "part", first, 4 // first, "fsdp", 4, stop_after=2)
    part = _launch(tmp_path / "part", then, 4 // then, "fsdp", 4, resume="auto")
    assert part["resumed_from"] == 2
    assert part["losses"] == _loss_tol(full["losses"][2:])
    _same_weights(part["weights"], full["weights"])


def _train_in_process(tmp_path, name, **kw):
    from lmlab.losses.objectives import LMObjective
    from lmlab.models import load_model
    from lmlab.runs import Run
    from lmlab.train.data import BatchStream
    from lmlab.train.loop import train
    from tests.train.helpers import config, pad_collate, random_examples

    stop_after = kw.pop("stop_after", None)
    cfg = config(tmp_path / name, batch_size=4, max_steps=4, lr=1e-3, save_every=1, **kw)
    run = Run(path=tmp_path / name, stage="test")
    run.path.mkdir(parents=True, exist_ok=True)
    model = load_model("tiny:llama")
    stream = BatchStream(random_examples(32, lo=4, hi=20), 4, pad_collate, seed=0)
    res = train(model, LMObjective(), stream, cfg, run, stop_after=stop_after)
    return res, model


def test_fsdp_in_one_process_trains_like_plain_and_resumes_exactly(tmp_path):
    import torch
    import torch.distributed as dist

    plain, m0 = _train_in_process(tmp_path, "plain")
    full, m1 = _train_in_process(tmp_path, "fsdp", strategy="fsdp")
    assert not dist.is_initialized()  # the one-rank group is left when training ends
    assert type(m1) is type(m0)  # a plain transformers model again, for final/
    losses = [m["train/loss"] for m in full.metrics]
    assert losses == _loss_tol([m["train/loss"] for m in plain.metrics])
    _train_in_process(tmp_path, "part", strategy="fsdp", stop_after=2)
    shutil.copytree(tmp_path / "part", tmp_path / "plain-after")
    part, m2 = _train_in_process(tmp_path, "part", strategy="fsdp", resume="auto")
    assert part.resumed_from == 2
    assert [m["train/loss"] for m in part.metrics] == losses[2:]
    for (n, a), b in zip(m1.named_parameters(), m2.parameters()):
        assert torch.equal(a, b), n
    # the sharded checkpoint also resumes without fsdp (DCP reads it into plain tensors)
    plain_after, _ = _train_in_process(tmp_path, "plain-after", resume="auto")
    assert plain_after.resumed_from == 2
    assert [m["train/loss"] for m in plain_after.metrics] == _loss_tol(losses[2:])
