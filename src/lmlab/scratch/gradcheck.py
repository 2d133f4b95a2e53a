"""Finite-difference gradients: the oracle every hand-written backward is checked against.

``numeric_grad(f, x)`` perturbs each entry of ``x`` by +-eps and takes the central difference
(f(x + eps) - f(x - eps)) / 2eps, whose error is O(eps^2) from truncation plus about
ulp(f) / eps from rounding: with float64 and eps = 1e-6 both are near 1e-10 for smooth f of
size 1, which is why the checks run in float64.
"""

from __future__ import annotations

import numpy as np


def numeric_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """d f() / d x by central differences; ``f`` takes no argument and reads ``x``, which is
    changed in place and restored."""
    grad = np.zeros_like(x, dtype=np.float64)
    flat, gflat = x.reshape(-1), grad.reshape(-1)  # views: writing flat[i] writes x
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


def rel_error(a, b) -> float:
    """max |a - b| / (max |a| + max |b|): ~1e-8 or less when a gradient is right in float64,
    1e-2 or more when it is wrong. (Relative to the largest entry, not entry by entry: an entry
    near 0 would turn finite-difference noise into a large ratio.)"""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = np.max(np.abs(a)) + np.max(np.abs(b)) if a.size else 0.0
    return float(np.max(np.abs(a - b)) / scale) if scale > 0 else 0.0


def check_grads(f, params: dict, grads: dict, eps: float = 1e-6) -> dict:
    """{name: rel_error(analytic, numeric)} for each array in ``params``; ``f()`` is the scalar
    loss computed from them and ``grads[name]`` the analytic gradient."""
    return {k: rel_error(grads[k], numeric_grad(f, params[k], eps)) for k in params}
