"""Float64 tolerances for the from-scratch twins, the tests/tolerance.py way: each rounding is
within eps64/2 of its exact result, two summation orders of n terms differ by less than
n * eps64 * S (S = the sum of the terms' magnitudes), and a factor 4 covers exp/log/tanh. With
the sizes here (a few hundred terms of size <= 100) that is ~1e-11 or less, far under 1e-6 and
far under what a wrong formula gives (1e-3 or more)."""

from __future__ import annotations

import numpy as np

EPS64 = 2.0 ** -52


def tol64(terms: int, scale) -> np.ndarray:
    return 4 * max(terms, 1) * EPS64 * np.asarray(scale, dtype=np.float64)


def assert_close64(ours, ref, terms: int, scale, what: str = "") -> None:
    """|ours - ref| <= tol64(terms, scale) entry by entry (scale: an array or a number; a zero
    scale asks for equality), with the worst ratio in the message."""
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, (what, ours.shape, ref.shape)
    tol = np.broadcast_to(tol64(terms, scale), ref.shape)
    diff = np.abs(ours - ref)
    bad = diff > tol
    assert not bad.any(), (f"{what}: {bad.sum()} of {bad.size} entries differ; max diff "
                           f"{diff.max():.3g}, tolerance there {tol[bad].max():.3g}")
    # guard against a vacuous check: a tolerance this loose would pass wrong formulas too
    assert tol.max() < 1e-6, (what, tol.max())
