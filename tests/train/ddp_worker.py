"""Run by test_distributed under torchrun: 3 steps of the shared loop on the tiny model."""

import json
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


def main(out_dir: str, batch_size: int) -> None:
    init_distributed(torch.device("cpu"))
    import pathlib

    cfg = config(pathlib.Path(out_dir), batch_size=batch_size, max_steps=3, lr=1e-3)
    run = Run(path=pathlib.Path(out_dir), stage="test")
    run.path.mkdir(parents=True, exist_ok=True)
    model = load_model("tiny:llama")
    stream = BatchStream(random_examples(16, lo=4, hi=20), batch_size, pad_collate,
                         seed=0, rank=rank(), world=world_size())
    res = train(model, LMObjective(), stream, cfg, run)
    if rank() == 0:
        weights = {n: p.detach().double().sum().item() for n, p in model.named_parameters()}
        (run.path / "result.json").write_text(json.dumps(
            {"losses": [m["train/loss"] for m in res.metrics], "weights": weights}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
