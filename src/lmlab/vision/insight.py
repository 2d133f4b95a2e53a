"""Seeing inside a trained classifier: gradient norms per layer through training, feature maps
of each conv stage, a confusion matrix and the misclassified test images, as files in the run
folder (``insight/``) that the report shows.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn


def layer_of(param_name: str) -> str:
    """'stages.1.0.0.weight' -> 'stages.1.0.0' (the module that owns the parameter)."""
    return param_name.rsplit(".", 1)[0]


class GradNormProbe:
    """Records the gradient L2 norm of each layer (its parameters together) through training.

    A hook on each parameter (``register_post_accumulate_grad_hook``) keeps a reference to its
    latest gradient, nothing more (no work per step); as a ``MetricLogger`` handed to the loop
    it computes the norms for every logged step whose number is a multiple of ``every`` and
    appends them to ``path`` (JSON lines: {"step", layer: norm}). The loop logs after the
    optimizer step; ``zero_grad(set_to_none=True)`` drops the parameter's reference, not ours,
    so these are the gradients that step used (after clipping, when clip_grad is on; with
    gradient accumulation, the accumulated ones).
    """

    def __init__(self, model: nn.Module, path: Path, every: int = 10):
        self.path, self.every = Path(path), every
        self._grads: dict[str, torch.Tensor] = {}
        self.handles = [p.register_post_accumulate_grad_hook(self._hook(name))
                        for name, p in model.named_parameters() if p.requires_grad]

    def _hook(self, name: str):
        def hook(p):
            self._grads[name.removeprefix("module.")] = p.grad
        return hook

    def norms(self) -> dict[str, float]:
        sq: dict[str, float] = {}
        for name, g in self._grads.items():
            layer = layer_of(name)
            sq[layer] = sq.get(layer, 0.0) + float(g.detach().float().pow(2).sum())
        return {layer: v ** 0.5 for layer, v in sq.items()}

    def log(self, metrics: dict, step: int) -> None:
        if step % self.every == 0 and self._grads:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": step, **self.norms()}) + "\n")

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self._grads.clear()


@torch.no_grad()
def stage_outputs(model: nn.Module, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """(stage name, its output (B, C, H, W)) for each conv stage, by forward hooks."""
    from lmlab.vision.models import conv_stages

    outs: list[tuple[str, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: outs.append((n, o.detach().cpu())))
             for n, m in conv_stages(model)]
    was = model.training
    model.eval()
    try:
        model(x.to(next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return outs


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def feature_maps_png(image: torch.Tensor, outs, channels: int = 8) -> bytes:
    """The input and the first ``channels`` maps of each stage for one image."""
    plt = _plt()
    fig, axes = plt.subplots(len(outs) + 1, channels, figsize=(channels * 0.9,
                                                               (len(outs) + 1) * 0.95), dpi=80)
    axes = axes.reshape(len(outs) + 1, channels)
    for ax in axes.flat:
        ax.axis("off")
    axes[0, 0].imshow(_show(image), cmap="gray")
    axes[0, 0].set_title("input", fontsize=7)
    for r, (name, o) in enumerate(outs, 1):
        for c in range(min(channels, o.shape[1])):
            axes[r, c].imshow(o[0, c].numpy(), cmap="viridis")
        axes[r, 0].set_title(f"{name} {tuple(o.shape[1:])}", fontsize=7, loc="left")
    return _png(fig)


def misclassified_png(x: torch.Tensor, y: torch.Tensor, pred: torch.Tensor, classes,
                      n: int = 16) -> bytes | None:
    """The first ``n`` misclassified images with 'true -> predicted' titles."""
    wrong = (pred != y).nonzero()[:, 0][:n]
    if not len(wrong):
        return None
    plt = _plt()
    cols = 8
    rows = (len(wrong) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.3), dpi=80,
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong.tolist()):
        ax.imshow(_show(x[i]), cmap="gray")
        ax.set_title(f"{classes[y[i]][:9]}\n-> {classes[pred[i]][:9]}", fontsize=6)
    return _png(fig)


def confusion_png(cm: torch.Tensor, classes) -> bytes:
    plt = _plt()
    n = len(classes)
    fig, ax = plt.subplots(figsize=(0.45 * n + 1.5, 0.45 * n + 1), dpi=80)
    ax.imshow(cm.numpy(), cmap="Blues")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=6,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(n), [c[:10] for c in classes], rotation=90, fontsize=7)
    ax.set_yticks(range(n), [c[:10] for c in classes], fontsize=7)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("true", fontsize=8)
    return _png(fig)


def _show(img: torch.Tensor):
    """(C, H, W) normalised -> (H, W) or (H, W, 3) in 0..1 for imshow."""
    img = img.float()
    img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-8)
    return img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()
