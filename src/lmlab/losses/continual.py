"""Continual learning penalties: keep the weights that mattered for task A while learning B.

EWC (Kirkpatrick et al. 2017): lambda/2 * sum_i F_i (theta_i - theta*_i)^2, with F the diagonal
of the (empirical) Fisher information at theta* = the weights after task A. The L2 pull is the
same with every F_i = 1. ``fisher_diagonal`` estimates F as the mean over examples of the
squared gradient of each example's summed log-likelihood (one backward pass per example).
``PenalizedObjective`` adds a penalty to any objective.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def ewc_penalty(params: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor],
                fisher: dict[str, torch.Tensor], lam: float) -> torch.Tensor:
    """lam/2 * sum over names and elements of F (p - anchor)^2 (names: those in ``fisher``)."""
    total = None
    for name, f in fisher.items():
        term = (f * (params[name] - anchor[name]) ** 2).sum()
        total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return 0.5 * lam * total


def l2_penalty(params: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor],
               lam: float) -> torch.Tensor:
    """lam/2 * ||params - anchor||^2 over the names in ``anchor``."""
    total = None
    for name, a in anchor.items():
        term = ((params[name] - a) ** 2).sum()
        total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return 0.5 * lam * total


def trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def fisher_diagonal(model: torch.nn.Module, examples: list, collate: Callable[[list], dict],
                    progress: bool = False) -> dict[str, torch.Tensor]:
    """Diagonal empirical Fisher of the trainable parameters: mean over ``examples`` of
    (d/dθ sum_t log p(y_t | y_<t, x))^2, one example per backward pass (the square of a
    batch's summed gradient would mix examples). Returns fp32 tensors on the CPU."""
    from lmlab.losses.lm import IGNORE

    params = trainable(model)
    acc = {n: torch.zeros(p.shape, dtype=torch.float32) for n, p in params.items()}
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # no dropout: the Fisher of the model that will be anchored
    items = examples if not progress else _bar(examples)
    for ex in items:
        batch = {k: v.to(device) for k, v in collate([ex]).items()}
        labels = batch.pop("labels")
        logits = model(**batch, use_cache=False).logits.float()  # (1, T, V)
        nll = torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:],
                                                ignore_index=IGNORE, reduction="sum")
        model.zero_grad(set_to_none=True)
        nll.backward()
        for n, p in params.items():
            if p.grad is not None:
                acc[n] += p.grad.detach().float().cpu() ** 2
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return {n: a / max(1, len(examples)) for n, a in acc.items()}


def _bar(items):
    from tqdm.auto import tqdm

    return tqdm(items, desc="fisher", unit="row")


class PenalizedObjective:
    """``base`` plus ``penalty()`` once per optimizer step: the loop divides the summed loss by
    the step's token count, so each micro-batch adds penalty * its own count."""

    def __init__(self, base, penalty: Callable[[], torch.Tensor]):
        self.base, self.penalty = base, penalty

    def count(self, batch: dict) -> int:
        return self.base.count(batch)

    def __call__(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        loss, metrics = self.base(model, batch)
        n = self.base.count(batch)
        pen = self.penalty()
        return loss + pen * n, {**metrics, "penalty": float(pen.detach()) * n}
