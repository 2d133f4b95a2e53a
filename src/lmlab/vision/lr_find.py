"""The LR range test (Smith 2017, the fastai "lr_find"): train a copy of the model for a few
steps while the lr grows geometrically from ``lr_min`` to ``lr_max``, record the loss, stop
when it diverges, and suggest an lr. A diagnostic before training, not training: it runs on a
deep copy, so the run's own model and optimizer never see it.
"""

from __future__ import annotations

import copy
import math


def lr_at(i: int, steps: int, lr_min: float, lr_max: float) -> float:
    """Geometric sweep: lr_min at i = 0, lr_max at i = steps - 1."""
    if steps <= 1:
        return lr_min
    return lr_min * (lr_max / lr_min) ** (i / (steps - 1))


def suggest(lrs: list[float], losses: list[float]) -> float | None:
    """The lr of the steepest fall of the smoothed loss (per unit of log lr), ignoring the
    first and last few points; None when there are too few."""
    if len(lrs) < 5:
        return None
    best, slope = None, 0.0
    for i in range(2, len(lrs) - 2):
        d = (losses[i + 1] - losses[i - 1]) / (math.log(lrs[i + 1]) - math.log(lrs[i - 1]))
        if d < slope:
            best, slope = lrs[i], d
    return best


def lr_range_test(model, objective, stream, make_optimizer, cfg, *, steps: int = 100,
                  lr_min: float = 1e-5, lr_max: float = 1.0, beta: float = 0.9) -> dict:
    """{"lr": [...], "loss": [...], "smoothed": [...], "suggested_lr": x} on a copy of
    ``model``; ``stream`` should be a stream of its own (its position is consumed)."""
    probe = copy.deepcopy(model).train()
    opt = make_optimizer(probe, cfg)
    lrs, losses, smooth = [], [], []
    avg, best = 0.0, math.inf
    for i in range(steps):
        lr = lr_at(i, steps, lr_min, lr_max)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = stream.next()
        loss_sum, _ = objective(probe, batch)
        loss = loss_sum / objective.count(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = float(loss.detach())
        avg = beta * avg + (1 - beta) * value
        s = avg / (1 - beta ** (i + 1))  # bias-corrected exponential average
        lrs.append(lr)
        losses.append(value)
        smooth.append(s)
        best = min(best, s)
        if not math.isfinite(s) or s > 4 * best:  # diverged: the rest says nothing
            break
    return {"lr": lrs, "loss": losses, "smoothed": smooth, "suggested_lr": suggest(lrs, smooth)}
