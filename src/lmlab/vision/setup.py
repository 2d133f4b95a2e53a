"""The vision stage's setup and wrap-up steps, one function each, so that
``stages/vision.py`` reads as the recipe: data, run folder, subset, model, loop, results."""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from lmlab.errors import DataError
from lmlab.vision.data import (
    ImageSet,
    channel_stats,
    check_labels,
    load_source,
    normalise,
)


@dataclass
class VisionData:
    train: ImageSet  # normalised float32 (N, C, H, W)
    test: ImageSet
    mean: torch.Tensor  # (C,) on the 0..1 scale
    std: torch.Tensor
    val: ImageSet | None = None  # held out of train by val_fraction: what eval_every scores

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])


def load_data(cfg) -> VisionData:
    """Train and test images, normalised by the training set's per-channel mean and std."""
    from lmlab.common import print0

    kw = {"size": cfg.image_size, "channels": cfg.channels, "seed": cfg.seed}
    train = load_source(cfg.data, "train", **kw)
    test = load_source(cfg.data, "test", classes=train.classes, **kw)
    for part, name in ((train, "train"), (test, "test")):
        check_labels(part.y, len(train.classes), f"{cfg.data} ({name})")
    if train.x.shape[1:] != test.x.shape[1:]:
        raise DataError(f"train images are {tuple(train.x.shape[1:])}, test images "
                        f"{tuple(test.x.shape[1:])}: both splits must have one shape",
                        file=cfg.data)
    if cfg.data_limit and cfg.data_limit < len(train):
        keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed))
        train = train.subset(keep[:cfg.data_limit].sort().values)
    train, val = split_validation(train, cfg.val_fraction, cfg.seed)
    mean, std = channel_stats(train.x)
    held = f" / {len(val):,} validation" if val is not None else ""
    print0(f"[lmlab] data: {cfg.data}, {len(train):,} train{held} / {len(test):,} test images "
           f"of {tuple(train.x.shape[1:])}, {len(train.classes)} classes")

    def norm(part: ImageSet) -> ImageSet:  # every split by the training images' statistics
        return ImageSet(normalise(part.x, mean, std), part.y, train.classes)

    return VisionData(norm(train), norm(test), mean, std,
                      norm(val) if val is not None else None)


def split_validation(train: ImageSet, fraction: float, seed: int
                     ) -> tuple[ImageSet, ImageSet | None]:
    """Hold ``fraction`` of each class's training images out as a validation set (seeded,
    at least one image a class), so that ``eval_every`` and model choices never see the test
    set. Returns (the rest, the held-out images) in their original order."""
    if not fraction:
        return train, None
    g = torch.Generator().manual_seed(seed + 7919)  # not the data_limit draw's permutation
    held = []
    for c in torch.unique(train.y).tolist():
        idx = (train.y == c).nonzero().flatten()
        n = max(1, round(fraction * len(idx)))
        if n >= len(idx):
            raise DataError(f"val_fraction={fraction}: class {train.classes[c]!r} has only "
                            f"{len(idx)} training images, too few to hold some out",
                            file="val_fraction")
        held.append(idx[torch.randperm(len(idx), generator=g)[:n]])
    out = torch.zeros(len(train), dtype=torch.bool)
    out[torch.cat(held)] = True
    return train.subset(out.logical_not().nonzero().flatten()), train.subset(
        out.nonzero().flatten())


def start(cfg):
    """``stages.setup.start_stage`` without the language-model reference check (``model``
    names an architecture here)."""
    from lmlab.common import pick_device, print0, rank, seed_everything, world_size
    from lmlab.runs import prepare_run
    from lmlab.stages.setup import StageContext
    from lmlab.train.distributed import init_distributed

    device = pick_device(cfg.device)
    if world_size() > 1 and device.type == "cuda":
        device = torch.device("cuda", rank() % torch.cuda.device_count())
    init_distributed(device)
    prec = precision(cfg, device)
    if prec.autocast and device.type == "cpu" and not cfg.channels_last:
        cfg.channels_last = True  # oneDNN's bf16 convolutions want NHWC (1.3x vs 1.0x NCHW)
    print0(f"[lmlab] dtype {cfg.dtype} -> {prec.label}: {prec.reason}"
           + (", channels-last" if cfg.channels_last else ""))
    run = prepare_run(cfg, "vision", resolved={"dtype": prec.label, "dtype_reason": prec.reason,
                                               "channels_last": cfg.channels_last})
    seed_everything(cfg.seed)
    return StageContext(run=run, device=device, dtype=prec.dtype, autocast=prec.autocast,
                        dtype_reason=prec.reason)


# dtype=auto on a CPU: bf16 autocast only for convolution nets whose widest convolution has at
# least this many channels. Measured on an AMX Xeon, 2 threads, one training step interleaved
# (bf16 autocast + channels-last vs fp32): cnn 32/64/128 1.30x, cnn 64/128/256 1.44x; cnn
# 16/32 on 8x8 digits 0.94x, the MLP 0.84x (casts and elementwise work outweigh the faster
# convolutions); resnet20 2.16x. EfficientNet-Lite0 stays fp32: its depthwise convolutions
# bf16 backward took over 40 s a step where fp32 took 0.5 s (torch 2.13, oneDNN). The probe's
# bf16-vs-fp32 ratio still decides first (AVX2-only CPUs: fp32).
VISION_MIN_CONV_WIDTH = 64


def conv_width(cfg) -> int:
    """The widest convolution (output channels) of the model ``cfg`` builds; 0 for models
    without dense convolution stages (mlp; vit: its patch embedding is one conv;
    efficientnet-lite0: depthwise)."""
    if cfg.model == "cnn":
        return max(cfg.widths)
    return {"resnet8": 64, "resnet20": 64, "resnet18": 512, "resnet50": 2048}.get(cfg.model, 0)


def precision(cfg, device):
    """The run's Precision: ``dtype=auto`` on a CPU asks the probe (lmlab.hardware) when the
    model is a convolution net at least VISION_MIN_CONV_WIDTH wide, else fp32; explicit values
    and GPUs as in every training stage (``common.resolve_precision``)."""
    from lmlab.common import Precision, resolve_precision

    if cfg.dtype == "auto" and device.type == "cpu":
        width = conv_width(cfg)
        if width < VISION_MIN_CONV_WIDTH:
            if cfg.model == "efficientnet-lite0":
                why = "depthwise convolutions: bf16 measured far slower than fp32"
            elif not width:
                why = "no convolution stages: bf16 casts cost more than they save"
            else:
                why = (f"convolutions {width} wide (< {VISION_MIN_CONV_WIDTH}): bf16 casts "
                       f"cost more than they save")
            return Precision(torch.float32, False, f"{cfg.model}: {why}")
        prec = resolve_precision("auto", device, autocast_ok=True)
        return prec
    return resolve_precision(cfg.dtype, device)


def precision_label(ctx) -> str:
    """'fp32', 'bf16', or 'bf16 autocast' (fp32 weights, bf16 compute)."""
    name = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[ctx.dtype]
    return f"{name} autocast" if ctx.autocast else name


def training_set(cfg, data: VisionData):
    """(x, y, weights or None, subset info): all training images, or a coreset / random
    subset of ``subset_fraction`` of them chosen per class: on pooled-pixel features, or on
    a short proxy run's EL2N scores / penultimate features (ccs, el2n, moderate, and
    trimmed, and kcenter / facility with ``subset_features=proxy|gradient``; the proxy's
    time is selection time)."""
    import time

    from lmlab.data.coresets import (
        SCORED_METHODS,
        el2n_scores,
        gradient_features,
        select,
        select_scored,
    )
    from lmlab.vision.proxy import proxy_probs
    from lmlab.vision.train import pixel_features

    x, y = data.train.x, data.train.y
    if cfg.subset == "none":
        return x, y, None, {"method": "none", "images": len(y)}
    t0 = time.time()
    proxy = None
    on_proxy = cfg.subset in ("kcenter", "facility") and cfg.subset_features != "pixels"
    if cfg.subset in SCORED_METHODS or on_proxy:
        proxy = _proxy(cfg, x, y, len(data.train.classes))
    if cfg.subset in SCORED_METHODS:
        idx, w = select_scored(cfg.subset, y, cfg.subset_fraction, seed=cfg.seed,
                               scores=el2n_scores(proxy_probs(proxy), y),
                               features=proxy.features, prune_hard=cfg.subset_prune_hard,
                               prune_easy=cfg.subset_prune_easy,
                               class_power=cfg.subset_class_power)
    else:
        if proxy is None:
            feats = pixel_features(x)
        elif cfg.subset_features == "proxy":
            feats = proxy.features
        else:  # CRAIG: each image's last-layer gradient, (softmax - onehot) x [features, 1]
            feats = gradient_features(proxy_probs(proxy), y, proxy.features.double()).float()
        idx, w = select(cfg.subset, feats, y, cfg.subset_fraction, seed=cfg.seed)
    secs = time.time() - t0
    weighted = cfg.subset == "facility" and cfg.subset_weighted
    method = cfg.subset + (f"-{cfg.subset_features}" if on_proxy else "")
    info = {"method": method, "fraction": cfg.subset_fraction, "images": len(idx),
            "of": len(y), "select_seconds": round(secs, 1), "weighted": weighted,
            "features": "pixels" if proxy is None else cfg.subset_features if on_proxy
            else "proxy",
            "per_class": torch.bincount(y[idx], minlength=int(y.max()) + 1).tolist(),
            "note": f" (subset={method}: {len(idx):,} of {len(y):,}, {secs:.1f} s)"}
    return x[idx], y[idx], (w if weighted else None), info


def _proxy(cfg, x, y, n_classes: int):
    """The short proxy run the scored selections read (on the CPU, before the run's model)."""
    from lmlab.common import print0
    from lmlab.vision.proxy import train_proxy

    out = train_proxy(x, y, n_classes, epochs=cfg.subset_proxy_epochs, seed=cfg.seed)
    acc = float((out.logits.argmax(1) == y).float().mean())
    print0(f"[lmlab] subset: proxy CNN {cfg.subset_proxy_epochs:g} epochs ({out.steps} steps) "
           f"over {len(y):,} images, train accuracy {acc:.2%}")
    return out


def build(cfg, data: VisionData, device, dtype):
    from lmlab.vision.models import build_model

    c, h, _ = data.shape
    model = build_model(cfg.model, in_channels=c, n_classes=len(data.train.classes),
                        image_size=h, widths=cfg.widths, depth=cfg.depths or cfg.depth,
                        pretrained=cfg.pretrained)
    if cfg.model == "efficientnet-lite0":  # the data's scale -> the weights' (and a size)
        model.set_input(data.mean, data.std, cfg.input_size)
    if cfg.init:
        _load_init(model, cfg.init)
    if cfg.train_layers == "head":
        model.freeze()
    model = model.to(device=device, dtype=dtype)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _load_init(model, ref: str) -> None:
    """Weights of another vision run (its final/model.pt), shapes checked."""
    from pathlib import Path

    from lmlab.errors import UserError

    path = Path(ref) / "final" / "model.pt" if (Path(ref) / "final").is_dir() else \
        Path(ref) / "model.pt"
    if not path.is_file():
        raise UserError(f"init={ref}: no final/model.pt there (a finished vision run folder)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise UserError(f"init={ref}: its weights do not fit model this run builds "
                        f"({str(e).splitlines()[0]})") from None


def model_table(cfg, data: VisionData) -> list[dict]:
    """Parameters and FLOPs of every model at this data's shape (item 6's table)."""
    from lmlab.vision.flops import model_table as table
    from lmlab.vision.models import MODELS

    c, h, _ = data.shape
    names = [m for m in MODELS if m != "vit" or h % 4 == 0]
    return table(names, in_channels=c, n_classes=len(data.train.classes), image_size=h,
                 widths=cfg.widths, depth=cfg.depths or cfg.depth)


def print_table(table: list[dict], data: VisionData) -> None:
    from lmlab.common import print0

    print0(f"[lmlab] parameters and FLOPs per image of {'x'.join(map(str, data.shape))} "
           f"(measured; training ~ 3x forward):")
    print0(f"  {'model':<10} {'params':>12} {'forward MFLOPs':>15}")
    for r in table:
        print0(f"  {r['model']:<10} {r['params']:>12,} {r['forward_flops'] / 1e6:>15.2f}")


def own_size(model, data: VisionData) -> dict:
    """The trained model's parameter count alone (flops_table=false skips the FLOP count)."""
    from lmlab.vision.flops import count_parameters

    return {"params": count_parameters(model), "forward_flops": None}


def resized_size(model, data: VisionData) -> dict:
    """Parameters and FLOPs of a model that resizes its input (``input_size``), counted on
    one image of the data's shape, so the resize is inside the count."""
    from lmlab.vision.flops import count_parameters, forward_flops

    return {"params": count_parameters(model), "forward_flops": forward_flops(model, data.shape)}


def find_lr(cfg, run, model, objective, stream, build_opt) -> dict:
    from lmlab.common import print0
    from lmlab.vision.lr_find import lr_range_test

    out = lr_range_test(model, objective, stream, build_opt, cfg, steps=cfg.lr_find_steps)
    run.write_json("lr_range.json", out)
    sug = out["suggested_lr"]
    print0(f"[lmlab] LR range test: {len(out['lr'])} steps, steepest fall at lr="
           f"{sug if sug is None else f'{sug:.2g}'} (lr={cfg.lr:g} is used; lr_range.json)")
    return out


def probe(cfg, run, model):
    from lmlab.vision.insight import GradNormProbe

    (run.path / "insight").mkdir(exist_ok=True)
    return GradNormProbe(model, run.path / "insight" / "gradnorms.jsonl", cfg.probe_every)


def evaluate(cfg, model, test: ImageSet, tta: bool = False) -> dict:
    from lmlab.vision.train import accuracy_and_loss, predict

    logits = predict(model, test.x, cfg.eval_batch_size, tta_flip=tta,
                     channels_last=cfg.channels_last)
    return accuracy_and_loss(logits, test.y)


def test_logits(cfg, model, test: ImageSet) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of the test images as they are, and averaged with their mirrors' (tta_flip)."""
    from lmlab.vision.train import predict

    kw = {"batch_size": cfg.eval_batch_size, "channels_last": cfg.channels_last}
    plain = predict(model, test.x, **kw)
    return plain, (plain + predict(model, test.x.flip(3), **kw)) / 2


def finish(cfg, run, model, data: VisionData, table: list[dict], ema=None) -> dict:
    """Test accuracy (of the weight average when ``ema`` is given: it becomes the final
    weights), the insight files and final/; returns the summary's numbers. Every run also
    records the accuracy of each choice of weights with and without flip averaging."""
    import contextlib

    from lmlab.vision.train import accuracy_and_loss, confusion_matrix

    test = data.test
    variants, logits = {}, None
    for name, ctx in [("last", contextlib.nullcontext())] + ([("ema", ema.swapped())]
                                                              if ema else []):
        with ctx:
            plain, mirrored = test_logits(cfg, model, test)
        for key, lg in ((name, plain), (f"{name}+flip", mirrored)):
            variants[key] = round(float((lg.argmax(1) == test.y).float().mean()), 4)
        logits = mirrored if cfg.tta_flip else plain
    if ema:
        ema.copy_to()
    pred = logits.argmax(1)
    cm = confusion_matrix(pred, test.y, len(test.classes))
    folder = run.path / "insight"
    folder.mkdir(exist_ok=True)
    (folder / "confusion.json").write_text(json.dumps(
        {"classes": list(test.classes), "matrix": cm.tolist()}))
    if table:
        run.write_json("flops.json", {"input": list(data.shape), "models": table})
    _save_final(cfg, run, model, data)
    m = accuracy_and_loss(logits, test.y)
    per_class = (cm.diag().float() / cm.sum(1).clamp_min(1).float()).tolist()
    if cfg.insight:
        _draw(folder, model, test, pred, cm)
    return {"test_accuracy": m["accuracy"], "test_loss": m["loss"], "tta_flip": cfg.tta_flip,
            "ema": cfg.ema, "accuracy_by_weights": variants,
            "per_class_accuracy": {c: round(a, 4) for c, a in zip(test.classes, per_class)}}


def _draw(folder, model, test: ImageSet, pred, cm) -> None:
    from lmlab.vision import insight

    (folder / "confusion.png").write_bytes(insight.confusion_png(cm, test.classes))
    wrong = insight.misclassified_png(test.x, test.y, pred, test.classes)
    if wrong:
        (folder / "misclassified.png").write_bytes(wrong)
    outs = insight.stage_outputs(model, test.x[:1])
    if outs:
        (folder / "feature_maps.png").write_bytes(insight.feature_maps_png(test.x[0], outs))


def _save_final(cfg, run, model, data: VisionData) -> None:
    from lmlab.runs import commit_folder, temp_folder

    tmp = temp_folder(run.path)
    tmp.mkdir(parents=True)
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, tmp / "model.pt")
    (tmp / "model.json").write_text(json.dumps({
        "model": cfg.model, "widths": list(cfg.widths), "depth": cfg.depths or cfg.depth,
        "shape": list(data.shape), "classes": list(data.train.classes),
        "mean": data.mean.tolist(), "std": data.std.tolist()}, indent=1))
    commit_folder(tmp, run.final)
