"""Objectives: glue between a batch and a pure loss function (see train.loop.Objective)."""

from __future__ import annotations

import torch

from lmlab.losses.lm import IGNORE, token_cross_entropy_at


def trained_positions(labels: torch.Tensor) -> torch.Tensor:
    """Positions t (shared by the batch) whose next-token label is trained in some row.

    With completion-only masks most positions are prompt; projecting only these through the
    LM head (vocab 49152 x 576 for SmolLM2, ~1/5 of the forward FLOPs) saves that work.
    labels (B, T) -> idx (K,)
    """
    return (labels[:, 1:] != IGNORE).any(dim=0).nonzero().squeeze(-1)


class LMObjective:
    """Next-token cross-entropy over the tokens whose label is not -100."""

    def count(self, batch: dict) -> int:
        return int((batch["labels"][:, 1:] != IGNORE).sum())

    def __call__(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        labels = batch["labels"]
        idx = trained_positions(labels)  # (K,)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs, use_cache=False, logits_to_keep=idx).logits  # (B, K, V)
        loss, _ = token_cross_entropy_at(logits, labels, idx)
        return loss, {}
