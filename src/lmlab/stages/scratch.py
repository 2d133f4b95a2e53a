"""`lmlab scratch`: the from-scratch twins of weeks 1-5, run and measured.

``lab=perceptron``: the NumPy perceptron on AND, OR (learned) and XOR (never), and on a
separable set against Novikoff's bound. ``lab=xor``: the 2-layer NumPy network with hand-written
backprop solves XOR; how many random starts succeed at 2, 4 and ``hidden`` units.
``lab=micrograd``: the scalar autograd ``Value`` MLP trained on two moons. ``lab=layers``: each
NumPy layer (linear, conv2d, max-pool, batch-norm, softmax cross-entropy) against torch in
float64 and against finite differences. ``lab=all`` runs the four.

Writes ``metrics.jsonl`` (the curves: ``train/xor_loss``, ``train/moons_loss``, ...) and
``summary.json`` (one entry per lab). Nothing is checkpointed: every lab takes seconds to a
minute. The code is in ``lmlab.scratch``; tests/scratch/ proves each twin equal to torch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from lmlab.config import RunConfig, opt

HELP = "neural networks by hand: perceptron, XOR backprop, micrograd, NumPy layers vs torch"

LABS = ("perceptron", "xor", "micrograd", "layers")


@dataclass
class Config(RunConfig):
    UNUSED = ("model", "data", "max_steps", "resume")  # no model, no data file, no checkpoints
    output_dir: str = opt("", "run folder (default: runs/scratch-<lab>)")
    lab: str = opt("all", "which lab to run", choices=("all", *LABS))
    hidden: int = opt(8, "xor: hidden units of the network", min=1)
    xor_steps: int = opt(1000, "xor: full-batch gradient steps", min=1)
    xor_lr: float = opt(1.0, "xor: learning rate", min=0.0, min_exclusive=True)
    xor_seeds: int = opt(20, "xor: random starts tried at each hidden width (0 = skip)", min=0)
    moons: int = opt(64, "micrograd: training points (two moons)", min=4)
    moons_noise: float = opt(0.1, "micrograd: noise added to the moons", min=0.0)
    width: int = opt(8, "micrograd: units in each of the two hidden layers", min=1)
    moons_steps: int = opt(80, "micrograd: full-batch SGD steps (about 0.2-1 s each)", min=1)
    moons_lr: float = opt(1.0, "micrograd: initial learning rate (decays to 10%)", min=0.0,
                          min_exclusive=True)


def run(cfg: Config) -> dict:
    from lmlab.common import print0
    from lmlab.runs import prepare_run
    from lmlab.scratch import labs

    if not cfg.output_dir:
        cfg.output_dir = f"runs/scratch-{cfg.lab}"
    run_ = prepare_run(cfg, "scratch")
    chosen = LABS if cfg.lab == "all" else (cfg.lab,)
    summary: dict = {"stage": "scratch", "labs": list(chosen)}
    t0 = time.perf_counter()
    if "perceptron" in chosen:
        summary["perceptron"] = labs.perceptron_lab(cfg.seed, run_.log_metrics)
    if "xor" in chosen:
        summary["xor"] = labs.xor_lab(cfg.hidden, cfg.xor_steps, cfg.xor_lr, cfg.xor_seeds,
                                      cfg.seed, run_.log_metrics)
    if "micrograd" in chosen:
        summary["micrograd"] = labs.micrograd_lab(cfg.moons, cfg.moons_noise, cfg.width,
                                                  cfg.moons_steps, cfg.moons_lr, cfg.seed,
                                                  run_.log_metrics)
    if "layers" in chosen:
        summary["layers"] = labs.layers_lab(cfg.seed)
    summary["seconds"] = time.perf_counter() - t0
    run_.write_json("summary.json", summary)
    wrote = [f for f in ("metrics.jsonl", "summary.json") if (run_.path / f).exists()]
    print0(f"[lmlab] wrote {run_.path}/ ({', '.join(wrote)})")
    return summary
