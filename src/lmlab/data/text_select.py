"""Data selection for text rows: a coreset of pretraining or SFT rows on sentence embeddings.

The selection itself is ``lmlab.data.coresets`` (k-center greedy, facility location, random),
run on all rows as one class; this module adds what text needs around it: the text a row is
embedded by, a checked fraction, the chosen rows in their original order, and how well a
subset covers the rest (``cover``), which says what k-center optimises and random does not.
"""

from __future__ import annotations

import torch

from lmlab.data.coresets import METHODS


def check_selection(method: str, fraction: float) -> None:
    """ValueError for an unknown method or a fraction outside (0, 1]."""
    if method not in METHODS:
        raise ValueError(f"unknown selection method {method!r}; choose one of "
                         f"{', '.join(METHODS)}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")


def select_rows(method: str, features: torch.Tensor, fraction: float, *, seed: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices ascending, weights): ``round(fraction * N)`` rows (at least 1) of ``features``
    (N, D) by ``method``; facility location's weights count the rows each chosen row stands
    for (mean 1), others are 1."""
    from lmlab.data.coresets import select

    check_selection(method, fraction)
    if features.ndim != 2 or len(features) == 0:
        raise ValueError(f"features must be a non-empty (N, D) matrix, got shape "
                         f"{tuple(features.shape)}")
    idx, w = select(method, features, torch.zeros(len(features), dtype=torch.long), fraction,
                    seed=seed)
    order = idx.argsort()
    return idx[order], w[order]


def cover(features: torch.Tensor, chosen: torch.Tensor) -> dict:
    """Distance from every row to its nearest chosen row: max (k-center's radius) and mean
    (what facility location's objective rewards)."""
    d = torch.cdist(features.double(), features[chosen].double(),  # exact: 0 for a kept row
                    compute_mode="donot_use_mm_for_euclid_dist").min(1).values  # (N,)
    return {"radius": float(d.max()), "mean_distance": float(d.mean())}


def row_text(row: dict) -> str:
    """The text a row is embedded by: ``text``; a chat's messages; a task's prompt and answer;
    a preference or KTO row's prompt."""
    if "text" in row:
        return row["text"]
    if "messages" in row:
        return "\n".join(m["content"] for m in row["messages"])
    prompt = row.get("prompt", "")
    if isinstance(prompt, list):
        prompt = "\n".join(m["content"] for m in prompt)
    return "\n".join(x for x in (prompt, row.get("answer", "")) if x)
