"""What the shared loop needs to train an image classifier: a batch stream over in-memory
tensors, the classification ``Objective``, the optimizer choice and the evaluation pass.

Batches are ``x[idx]`` on whole tensors (no per-image Python, no DataLoader workers): that and
batched augmentation are where the vision stage's speed over a DataLoader script comes from.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lmlab.train.data import clamp_batch_size
from lmlab.vision.augment import apply, draw


class ImageStream:
    """Seeded, resumable, rank-aware batches of (augmented) images: the ``BatchStream``
    contract (``next``, ``state_dict``, ``load_state_dict``) for tensors.

    The order and every image's augmentation (crop offset, flip, cutout centre) are drawn per
    epoch from generators seeded by (seed, epoch), so the image at a position of an epoch is
    augmented the same however it is batched: 2 ranks x b see exactly what 1 rank x 2b sees,
    and grad_accum=2 x b what one batch of 2b sees, augmentations included. (epoch, position)
    is the whole state a resume needs. ``weights`` (N,) go into the batch as ``w``.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, seed: int = 0,
                 rank: int = 0, world: int = 1, weights: torch.Tensor | None = None,
                 crop_pad: int = 0, flip: bool = False, cutout: int = 0,
                 channels_last: bool = False):
        batch_size, note = clamp_batch_size(len(y), batch_size, world, noun="training images")
        if note:
            from lmlab.common import print0

            print0(note)
        self.x, self.y, self.weights = x, y, weights
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.aug = {"crop_pad": crop_pad, "flip": flip, "cutout_size": cutout}
        self.channels_last = channels_last
        self.epoch, self.pos = 0, 0
        self._order = self._make_order()

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world

    @property
    def steps_per_epoch(self) -> int:
        return len(self.y) // self.global_batch

    def _make_order(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.y), generator=g)
        self._params = draw(len(order), *self.x.shape[2:], g, **self.aug)  # by position
        return order

    def next(self) -> dict:
        if self.pos + self.global_batch > len(self._order):
            self.epoch, self.pos = self.epoch + 1, 0
            self._order = self._make_order()
        start = self.pos + self.rank * self.batch_size
        mine = slice(start, start + self.batch_size)  # this rank's part of the global batch
        self.pos += self.global_batch
        idx = self._order[mine]
        x = apply(self.x[idx], {k: v[mine] for k, v in self._params.items()},
                  crop_pad=self.aug["crop_pad"], cutout_size=self.aug["cutout_size"])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        batch = {"x": x, "y": self.y[idx]}
        if self.weights is not None:
            batch["w"] = self.weights[idx]
        return batch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._order = self._make_order()


class ClassifyObjective:
    """Summed cross-entropy (with label smoothing, optionally weighted per image by ``w``)
    over a batch of images; the loop divides by the image count."""

    unit = "img"  # the loop logs img/s (there are no tokens)

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def count(self, batch: dict) -> int:
        return len(batch["y"])

    def __call__(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        logits = model(batch["x"])  # (B, K)
        losses = F.cross_entropy(logits, batch["y"], reduction="none",
                                 label_smoothing=self.label_smoothing)  # (B,)
        if "w" in batch:
            losses = losses * batch["w"]
        with torch.no_grad():
            correct = float((logits.argmax(1) == batch["y"]).sum())
        return losses.sum(), {"accuracy": correct}


def make_optimizer(name: str, momentum: float = 0.9, nesterov: bool = True):
    """``make_optimizer(model, cfg)`` for the loop: AdamW or SGD (+ Nesterov); weight decay on
    weight matrices and conv kernels only (not on BN, LayerNorm or biases)."""

    def build(model, cfg) -> torch.optim.Optimizer:
        decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
        other = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay},
                  {"params": other, "weight_decay": 0.0}]
        if name == "sgd":
            return torch.optim.SGD(groups, lr=cfg.lr, momentum=momentum,
                                   nesterov=nesterov and momentum > 0)
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))

    return build


@torch.no_grad()
def predict(model, x: torch.Tensor, batch_size: int = 512, *, tta_flip: bool = False,
            channels_last: bool = False) -> torch.Tensor:
    """Logits (N, K) in eval mode; ``tta_flip`` averages them with the mirrored images'."""
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        logits = model(xb)
        if tta_flip:
            logits = (logits + model(xb.flip(3))) / 2
        out.append(logits.float().cpu())
    model.train(was)
    return torch.cat(out)


def accuracy_and_loss(logits: torch.Tensor, y: torch.Tensor) -> dict:
    return {"accuracy": float((logits.argmax(1) == y).float().mean()),
            "loss": float(F.cross_entropy(logits, y))}


def confusion_matrix(pred: torch.Tensor, y: torch.Tensor, n: int) -> torch.Tensor:
    """(n, n) counts: row = true class, column = predicted class."""
    return torch.bincount(y * n + pred, minlength=n * n).reshape(n, n)


def pixel_features(x: torch.Tensor, max_side: int = 14) -> torch.Tensor:
    """Flattened, average-pooled images (N, C*s*s): the embedding coresets select on when no
    trained model is given (pooling to <= 14x14 keeps distances cheap and less noisy)."""
    side = x.shape[-1]
    if side > max_side:
        x = F.adaptive_avg_pool2d(x.float(), max_side)
    return x.float().flatten(1)
