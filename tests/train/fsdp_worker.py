"""Run by the fsdp tests, alone or under torchrun: the shared loop on the tiny model.

    python -m tests.train.fsdp_worker OUT BATCH STRATEGY STEPS [STOP_AFTER] [RESUME]

writes OUT/result.json on rank 0: the logged losses and grad norms, a checksum per weight of
the (plain again) model, and the per-rank parameter + optimizer-state bytes it held."""

import json
import pathlib
import sys

import torch

from lmlab.common import rank, world_size
from lmlab.losses.objectives import LMObjective
from lmlab.models import load_model
from lmlab.runs import Run
from lmlab.train.data import BatchStream
from lmlab.train.distributed import init_distributed
from lmlab.train.loop import train
from tests.train.helpers import config, pad_collate, random_examples


def main(out_dir: str, batch: int, strategy: str, steps: int, stop_after: int = 0,
         resume: str = "no", preset: str = "llama") -> None:
    init_distributed(torch.device("cpu"))
    out = pathlib.Path(out_dir)
    cfg = config(out, batch_size=batch, max_steps=steps, lr=1e-3, strategy=strategy,
                 resume=resume, save_every=1, model=f"tiny:{preset}")
    run = Run(path=out, stage="test")
    run.path.mkdir(parents=True, exist_ok=True)
    model = load_model(f"tiny:{preset}")
    stream = BatchStream(random_examples(32, lo=4, hi=20), batch, pad_collate,
                         seed=0, rank=rank(), world=world_size())
    res = train(model, LMObjective(), stream, cfg, run, stop_after=stop_after or None)
    if rank() == 0:
        weights = {n: p.detach().double().sum().item() for n, p in model.named_parameters()}
        (out / "result.json").write_text(json.dumps(
            {"losses": [m["train/loss"] for m in res.metrics],
             "grad_norms": [m["train/grad_norm"] for m in res.metrics],
             "resumed_from": res.resumed_from, "weights": weights}))


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], int(a[1]), a[2], int(a[3]), int(a[4]) if len(a) > 4 else 0,
         a[5] if len(a) > 5 else "no")
