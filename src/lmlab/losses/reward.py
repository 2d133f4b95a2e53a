"""Reward-model losses and measures as pure functions of scalar scores.

Legend: B pairs; ``chosen`` / ``rejected`` are the reward model's scores r(x, y_w), r(x, y_l).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry(chosen: torch.Tensor, rejected: torch.Tensor, *,
                  margin: torch.Tensor | float = 0.0, center_coef: float = 0.0) -> torch.Tensor:
    """Per-pair Bradley-Terry loss, (B,): -log sigmoid(r_w - r_l - margin).

    ``margin`` (B,) or a float asks chosen to win by at least that much (Llama 2 RM, eq. 2).
    ``center_coef`` adds coef * (r_w + r_l)^2, which keeps rewards centred on 0 (Eisenstein et
    al. 2023); its batch mean equals TRL's ``center_rewards_coefficient`` term.
    """
    losses = -F.logsigmoid(chosen - rejected - margin)
    if center_coef:
        losses = losses + center_coef * (chosen + rejected) ** 2
    return losses


def pair_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """(B,) 1.0 where the chosen reply scored strictly higher."""
    return (chosen > rejected).float()


def calibration_error(chosen: torch.Tensor, rejected: torch.Tensor, bins: int = 10) -> float:
    """Expected calibration error of P(chosen wins) = sigmoid(r_w - r_l).

    For each pair the model's confidence is max(p, 1 - p) and it is right when p > 1/2; ECE is
    the count-weighted mean |accuracy - confidence| over ``bins`` equal-width confidence bins
    (Guo et al. 2017). 0 is perfectly calibrated.
    """
    p = torch.sigmoid((chosen - rejected).float())
    conf = torch.maximum(p, 1 - p)  # (B,) in [0.5, 1]
    right = (p > 0.5).float()
    edges = torch.linspace(0.5, 1.0, bins + 1)
    which = torch.bucketize(conf, edges[1:-1], right=True)  # (B,) bin index
    err = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            err += float(sel.sum()) * abs(float(right[sel].mean()) - float(conf[sel].mean()))
    return err / max(1, len(p))
