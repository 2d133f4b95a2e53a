"""Coreset selection: pick k rows of a feature matrix that stand for all of them.

Pure functions of (features, k, seed); no model, no training. ``select`` applies a method per
class (CRAIG selects within each class so the subset keeps the label balance).

- ``kcenter_greedy`` (Sener & Savarese 2018): repeatedly add the point farthest from the chosen
  set; a 2-approximation of the minimax cover radius.
- ``facility_location`` (CRAIG, Mirzasoleiman et al. 2020): greedily maximise
  F(S) = sum_i max_{j in S} sim(i, j), sim = d_max - distance; returns each chosen point's
  weight = how many points it is the nearest chosen one for. With ``sample`` < N it is the
  stochastic greedy of Mirzasoleiman et al. 2015 (each step scores a random candidate set of
  size (N/k) log(1/eps)), which keeps it O(N^2 log(1/eps)) instead of O(N^2 k).
"""

from __future__ import annotations

import math

import torch

METHODS = ("random", "kcenter", "facility")


def kcenter_greedy(features: torch.Tensor, k: int, first: int | None = None) -> torch.Tensor:
    """Indices (k,) chosen farthest-first. ``first``: the starting point (default: the one
    closest to the mean, so the result does not depend on the row order's first row).
    Ties go to the lowest index."""
    n = len(features)
    k = min(k, n)
    x = features.double()
    if first is None:
        first = int(torch.cdist(x.mean(0, keepdim=True), x)[0].argmin())
    chosen = [first]
    dist = torch.cdist(x[first:first + 1], x)[0]  # (N,) distance to the nearest chosen point
    for _ in range(k - 1):
        j = int(dist.argmax())
        chosen.append(j)
        dist = torch.minimum(dist, torch.cdist(x[j:j + 1], x)[0])
    return torch.tensor(chosen, dtype=torch.long)


def facility_location(features: torch.Tensor, k: int, *, eps: float = 0.01,
                      generator: torch.Generator | None = None,
                      exact: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices (k,), weights (k,)): greedy facility location on sim = d_max - distance.

    ``exact`` (or a small N) scores every candidate each step (plain greedy, deterministic);
    otherwise each step scores ``ceil(N/k * ln(1/eps))`` random candidates. Weights count the
    points whose most similar chosen point is that one (they sum to N)."""
    n = len(features)
    k = min(k, n)
    # float64 for toy sets (exact ties), float32 for a class of thousands (memory: N^2)
    x = features.double() if n <= 2048 else features.float()
    dist = torch.cdist(x, x)  # (N, N)
    sim = dist.max() - dist
    del dist
    sample = n if exact else min(n, math.ceil(n / k * math.log(1 / eps)))
    g = generator or torch.Generator().manual_seed(0)
    best = torch.zeros(n, dtype=sim.dtype)  # max similarity to the chosen set, per point
    free = torch.ones(n, dtype=torch.bool)
    chosen: list[int] = []
    for _ in range(k):
        cand = free.nonzero()[:, 0]
        if sample < len(cand):
            cand = cand[torch.randperm(len(cand), generator=g)[:sample]]
        gains = (sim[:, cand] - best[:, None]).clamp_min(0).sum(0)  # (candidates,)
        j = int(cand[int(gains.argmax())])
        chosen.append(j)
        free[j] = False
        best = torch.maximum(best, sim[:, j])
    idx = torch.tensor(chosen, dtype=torch.long)
    owner = sim[:, idx].argmax(1)  # (N,) which chosen point serves each point
    weights = torch.bincount(owner, minlength=k).double()
    return idx, weights


def select(method: str, features: torch.Tensor, labels: torch.Tensor, fraction: float, *,
           seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, weights) of ``fraction`` of the rows, chosen per class by ``method``
    (random | kcenter | facility). Weights are 1 except for facility location, where they
    are normalised to mean 1 over the subset (a weighted loss then matches the full set's)."""
    if method not in METHODS:
        raise ValueError(f"unknown coreset method {method!r}; choose one of {METHODS}")
    g = torch.Generator().manual_seed(seed)
    out_idx, out_w = [], []
    for c in labels.unique(sorted=True).tolist():
        rows = (labels == c).nonzero()[:, 0]
        k = max(1, round(fraction * len(rows)))
        if method == "random":
            pick, w = rows[torch.randperm(len(rows), generator=g)[:k]], torch.ones(k)
        elif method == "kcenter":
            pick, w = rows[kcenter_greedy(features[rows], k)], torch.ones(k)
        else:
            local, w = facility_location(features[rows], k, generator=g)
            pick = rows[local]
        out_idx.append(pick)
        out_w.append(w.double())
    idx, w = torch.cat(out_idx), torch.cat(out_w)
    return idx, (w / w.mean()).float()
