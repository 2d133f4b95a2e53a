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


# --- selections on a trained proxy's scores and features (issue 28: coreset >= random) --------
# Pixel-space k-center and facility location lost to a random half (they chase outliers and
# background shades). These use what a short proxy run learned: how hard each image is, and
# its penultimate features. All pure: (scores or features, k, generator) -> indices.

SCORED_METHODS = ("ccs", "el2n", "moderate", "trimmed")


def el2n_scores(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N,) EL2N (Paul et al. 2021): ||softmax - onehot(label)||_2 of each example early in
    training. 0 = confidently right (easy), sqrt(2) = confidently wrong (hard or mislabelled)."""
    onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).to(probs.dtype)
    return (probs - onehot).norm(dim=1)


def margin_scores(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N,) true-class logit minus the largest other logit: < 0 misclassified, large = easy."""
    true = logits.gather(1, labels[:, None])[:, 0]
    other = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
    return true - other


def stratified_by_score(scores: torch.Tensor, k: int, *, strata: int = 50,
                        prune_hard: float = 0.1,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Coverage-centric selection (CCS, Zheng et al. 2023): indices (k,) sorted.

    Drop the hardest ``prune_hard`` of the points (highest score; never below k points left),
    cut the remaining score range into ``strata`` equal-width bins, and share the budget over
    the non-empty bins: the smallest bins first, each takes min(its size, budget left // bins
    left) at random, so sparse difficulty levels are covered and the last (largest) bins take
    what the small ones could not. The total is exactly k."""
    n = len(scores)
    k = min(k, n)
    g = generator or torch.Generator().manual_seed(0)
    keep = max(k, n - int(prune_hard * n))
    pool = scores.argsort(stable=True)[:keep]  # the easiest `keep`
    s = scores[pool].double()
    width = float(s.max() - s.min()) / strata or 1.0
    bins = ((s - s.min()) / width).long().clamp(max=strata - 1)
    groups = [pool[bins == b] for b in range(strata) if bool((bins == b).any())]
    groups.sort(key=len)
    chosen, budget = [], k
    for i, grp in enumerate(groups):
        take = min(len(grp), budget // (len(groups) - i))
        chosen.append(grp[torch.randperm(len(grp), generator=g)[:take]])
        budget -= take
    return torch.cat(chosen).sort().values


def moderate_select(features: torch.Tensor, k: int) -> torch.Tensor:
    """Moderate coreset (Xia et al. 2023): indices (k,) of the points whose distance to the
    features' mean is closest to the median distance: neither the prototypical centre nor
    the outliers. Ties go to the lower index."""
    x = features.double()
    d = (x - x.mean(0)).norm(dim=1)
    gap = (d - d.median()).abs()
    return gap.argsort(stable=True)[:min(k, len(x))].sort().values


def gradient_features(probs: torch.Tensor, labels: torch.Tensor,
                      features: torch.Tensor | None = None) -> torch.Tensor:
    """(N, K) or (N, K * (D + 1)): each example's gradient of the cross-entropy with respect
    to the last layer (CRAIG's cheap proxy for the full gradient). For the logits it is
    softmax - onehot; for the head's weights and bias it is that outer [features, 1]."""
    g = probs - torch.nn.functional.one_hot(labels, probs.shape[1]).to(probs.dtype)
    if features is None:
        return g
    h = torch.cat([features.to(g.dtype), torch.ones(len(g), 1, dtype=g.dtype)], 1)
    return (g[:, :, None] * h[:, None, :]).flatten(1)


def class_quotas(sizes: torch.Tensor, difficulty: torch.Tensor, fraction: float, *,
                 power: float = 1.0) -> torch.Tensor:
    """(C,) images to keep per class: ``round(fraction * sum(sizes))`` in all, shared in
    proportion to ``sizes * difficulty ** power`` (power 0: the same fraction of every class),
    no class above its size nor below 1. Water-filling: a class whose share exceeds its size
    keeps all of it and the rest is re-shared; the remainders go to the largest fractions
    (ties to the lower class index)."""
    sizes = sizes.long()
    n_classes = len(sizes)
    total = min(int(sizes.sum()), max(n_classes, round(fraction * float(sizes.sum()))))
    w = sizes.double() * difficulty.double().clamp_min(1e-12) ** power
    share = torch.zeros(n_classes, dtype=torch.float64)
    capped = torch.zeros(n_classes, dtype=torch.bool)
    while True:
        left = total - float(sizes[capped].sum())
        free = ~capped
        share[free] = left * w[free] / w[free].sum()
        share[capped] = sizes[capped].double()
        over = free & (share > sizes.double())
        if not bool(over.any()):
            break
        capped |= over
    k = share.floor().long().clamp(min=1)
    k = torch.minimum(k, sizes)
    rest = total - int(k.sum())
    frac = share - share.floor()
    for c in sorted(range(n_classes), key=lambda c: (-float(frac[c]), c)):
        if rest <= 0:
            break
        if k[c] < sizes[c]:
            k[c] += 1
            rest -= 1
    return k


def trimmed_random(scores: torch.Tensor, k: int, *, prune_easy: float = 0.0,
                   prune_hard: float = 0.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices (k,) sorted: drop the easiest ``prune_easy`` and the hardest ``prune_hard`` of
    the points (by score, high = hard; fewer when fewer than k would be left: easy ones come
    back first, hardest first among them), then k at random among the rest."""
    n = len(scores)
    k = min(k, n)
    g = generator or torch.Generator().manual_seed(0)
    order = scores.argsort(descending=True, stable=True)  # hardest first
    hard = min(int(prune_hard * n), n - k)
    easy = min(int(prune_easy * n), n - k - hard)
    pool = order[hard:n - easy]
    return pool[torch.randperm(len(pool), generator=g)[:k]].sort().values


def select_scored(method: str, labels: torch.Tensor, fraction: float, *,
                  scores: torch.Tensor | None = None, features: torch.Tensor | None = None,
                  seed: int = 0, prune_hard: float = 0.1, strata: int = 50,
                  prune_easy: float = 0.2,
                  class_power: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, weights = 1) of ``fraction`` of each class, by a proxy's per-example
    ``scores`` (EL2N: high = hard) or ``features``: ``ccs`` (stratified over difficulty
    after dropping the hardest ``prune_hard``), ``el2n`` (the hardest, as in Paul et al.),
    ``moderate`` (median distance to the class mean in feature space), ``trimmed`` (each
    class's easiest ``prune_easy`` and hardest ``prune_hard`` dropped, random among the rest;
    the per-class budgets are ``class_quotas`` of the class's mean score ** ``class_power``,
    0 = ``fraction`` of each class)."""
    if method not in SCORED_METHODS:
        raise ValueError(f"unknown scored method {method!r}; choose one of {SCORED_METHODS}")
    need = features if method == "moderate" else scores
    if need is None:
        raise ValueError(f"{method}: needs {'features' if method == 'moderate' else 'scores'}")
    g = torch.Generator().manual_seed(seed)
    classes = labels.unique(sorted=True).tolist()
    members = [(labels == c).nonzero()[:, 0] for c in classes]
    if method == "trimmed":  # power 0: the same fraction of every class, the total exact
        quotas = class_quotas(torch.tensor([len(r) for r in members]),
                              torch.stack([scores[r].double().mean() for r in members]),
                              fraction, power=class_power).tolist()
    out = []
    for i, rows in enumerate(members):
        k = max(1, round(fraction * len(rows)))
        if method == "trimmed":
            local = trimmed_random(scores[rows], quotas[i], prune_easy=prune_easy,
                                   prune_hard=prune_hard, generator=g)
        elif method == "ccs":
            local = stratified_by_score(scores[rows], k, strata=strata, prune_hard=prune_hard,
                                        generator=g)
        elif method == "el2n":
            local = scores[rows].argsort(descending=True, stable=True)[:k]
        else:
            local = moderate_select(features[rows], k)
        out.append(rows[local])
    idx = torch.cat(out)
    return idx, torch.ones(len(idx))
