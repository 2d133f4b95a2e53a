"""Learning-rate schedules as pure functions of the step (so resume needs no scheduler state)."""

from __future__ import annotations

import math


def lr_factor(step: int, *, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """Multiplier on the peak lr for optimizer step ``step`` (0-based).

    Warmup ramps linearly from 1/(warmup+1) to 1; then ``constant`` stays at 1, ``linear`` and
    ``cosine`` decay to ``min_ratio`` at ``total``. ``one-cycle`` ramps up over 30% of training
    (or ``warmup`` if set) and anneals with a cosine to ``min_ratio`` (Smith & Topin 2017).
    """
    if schedule == "one-cycle":
        warmup = warmup or max(1, int(0.3 * total))
        schedule = "cosine"
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    if schedule == "linear":
        return 1.0 - (1.0 - min_ratio) * progress
    if schedule == "cosine":
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule}")
