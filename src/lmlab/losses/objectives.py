"""Objectives: glue between a batch and a pure loss function (see train.loop.Objective)."""

from __future__ import annotations

import torch

from lmlab.losses.lm import IGNORE, token_cross_entropy


class LMObjective:
    """Next-token cross-entropy over the tokens whose label is not -100."""

    def count(self, batch: dict) -> int:
        return int((batch["labels"][:, 1:] != IGNORE).sum())

    def __call__(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs, use_cache=False).logits  # (B, T, V)
        loss, n = token_cross_entropy(logits, batch["labels"])
        return loss, {}
