"""Toy 2-D datasets for the from-scratch labs, made with NumPy from a seed."""

from __future__ import annotations

import numpy as np

# the four rows of a two-input truth table, and its targets for three gates
GATE_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
GATES = {"and": np.array([0.0, 0.0, 0.0, 1.0]), "or": np.array([0.0, 1.0, 1.0, 1.0]),
         "xor": np.array([0.0, 1.0, 1.0, 0.0])}


def moons(n: int = 100, noise: float = 0.1, seed: int = 0):
    """Two interleaved half circles: X (n, 2), y (n,) in {-1, +1} (the upper moon is -1)."""
    rng = np.random.default_rng(seed)
    n_top = n // 2
    t = np.pi * rng.random(n)
    top = np.stack([np.cos(t[:n_top]), np.sin(t[:n_top])], axis=1)
    bottom = np.stack([1.0 - np.cos(t[n_top:]), 0.5 - np.sin(t[n_top:])], axis=1)
    X = np.concatenate([top, bottom]) + noise * rng.standard_normal((n, 2))
    y = np.concatenate([-np.ones(n_top), np.ones(n - n_top)])
    return X, y


def separable(n: int = 100, margin: float = 0.2, seed: int = 0):
    """Points in [-1, 1]^2 at least ``margin`` away from a random line through the square:
    X (n, 2), y (n,) in {0, 1}, and that line as (w, b) with |w| = 1 (y = 1 where w.x + b > 0)."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi)
    w, b = np.array([np.cos(angle), np.sin(angle)]), rng.uniform(-0.3, 0.3)
    X = np.empty((0, 2))
    while len(X) < n:  # rejection sampling: keep the points outside the margin band
        cand = rng.uniform(-1, 1, size=(2 * n, 2))
        X = np.concatenate([X, cand[np.abs(cand @ w + b) >= margin]])
    X = X[:n]
    return X, (X @ w + b > 0).astype(float), (w, b)
