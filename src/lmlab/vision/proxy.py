"""A short proxy run that coreset selection reads: how hard each training image is and what
a small trained net sees in it (EL2N, Paul et al. 2021, scores examples after a few epochs).

The proxy is the 94K-parameter 3-conv CNN, trained ``epochs`` passes over all the candidate
images with AdamW and a linear decay (flip augmentation, no label smoothing, so the
probabilities are the model's own), in the stream's order for ``seed``. Its time counts as
selection time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class ProxyOutput:
    logits: torch.Tensor  # (N, K) of the un-augmented training images, eval mode
    features: torch.Tensor  # (N, D) penultimate (pooled) features
    steps: int


def train_proxy(x: torch.Tensor, y: torch.Tensor, n_classes: int, *, epochs: float = 2.0,
                batch_size: int = 128, lr: float = 3e-3, seed: int = 0,
                eval_batch_size: int = 1000) -> ProxyOutput:
    """Train the proxy on (x, y) (normalised float images, labels) and score every image."""
    from lmlab.vision.models import CNN
    from lmlab.vision.train import ClassifyObjective, ImageStream

    torch.manual_seed(seed)
    model = CNN(x.shape[1], n_classes)
    stream = ImageStream(x, y, batch_size, seed=seed + 7, flip=True)
    steps = max(1, math.ceil(epochs * stream.steps_per_epoch))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)
    objective = ClassifyObjective()
    model.train()
    for _ in range(steps):
        batch = stream.next()
        loss, _ = objective(model, batch)
        (loss / objective.count(batch)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
    model.eval()
    logits, feats = [], []
    with torch.no_grad():
        for i in range(0, len(x), eval_batch_size):
            f = model.pool(model.stages(x[i:i + eval_batch_size]))  # (B, D)
            feats.append(f)
            logits.append(model.head(f))
    return ProxyOutput(torch.cat(logits), torch.cat(feats), steps)


def proxy_probs(out: ProxyOutput) -> torch.Tensor:
    return F.softmax(out.logits.double(), dim=1)
