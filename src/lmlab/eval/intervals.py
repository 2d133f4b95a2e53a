"""95% percentile-bootstrap intervals for accuracies, win rates and paired gains.

Every function is pure and seeded: the same values, ``n_boot`` and ``seed`` give the same
interval. Items (prompts) are resampled with replacement ``n_boot`` times; the interval is the
(2.5%, 97.5%) quantile of the resampled means. For a gain (after - before on the SAME prompts)
the prompt indices are resampled once for both, so the interval is for the paired difference.
"""

from __future__ import annotations

import numpy as np

N_BOOT = 2000


def bootstrap_ci(values: list[float], *, n_boot: int = N_BOOT, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap CI of the mean of ``values`` (None for no values)."""
    if not len(values):
        return None
    x = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def accuracy(flags: list[bool], *, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """``{"accuracy", "n", "correct", "ci95"}`` of per-item correct flags."""
    n = len(flags)
    correct = int(sum(bool(f) for f in flags))
    ci = bootstrap_ci([float(f) for f in flags], n_boot=n_boot, seed=seed)
    return {"accuracy": correct / n if n else None, "n": n, "correct": correct,
            "ci95": [round(ci[0], 6), round(ci[1], 6)] if ci else None}


def paired_gain(before: list[bool], after: list[bool], *, n_boot: int = N_BOOT,
                seed: int = 0) -> dict:
    """``{"before", "after", "gain", "n", "ci95"}``: accuracy after minus before on the same
    items, with a paired bootstrap CI of the difference."""
    if len(before) != len(after):
        raise ValueError(f"{len(before)} items before but {len(after)} after")
    diff = [float(a) - float(b) for b, a in zip(before, after)]
    n = len(diff)
    ci = bootstrap_ci(diff, n_boot=n_boot, seed=seed)
    return {"before": sum(map(float, before)) / n if n else None,
            "after": sum(map(float, after)) / n if n else None,
            "gain": sum(diff) / n if n else None, "n": n,
            "ci95": [round(ci[0], 6), round(ci[1], 6)] if ci else None}


def excludes_zero(ci95) -> bool:
    return bool(ci95) and (ci95[0] > 0 or ci95[1] < 0)
