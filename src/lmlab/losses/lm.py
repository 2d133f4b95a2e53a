"""Language-modelling loss as a pure function.

Legend: B batch, T time, V vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy and the number of predicted tokens.

    logits (B, T, V) predict position t+1 from position t; labels (B, T) use -100 for
    positions that are not trained. Returns the *sum* (not the mean) so that the caller can
    normalise by the token count of the whole optimizer step across micro-batches and ranks -
    the mean-of-means used by many loops over-weights short sequences (torchtune#2307).
    """
    shift_logits = logits[:, :-1, :].float()  # (B, T-1, V)
    shift_labels = labels[:, 1:]  # (B, T-1)
    loss = F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)),
                           shift_labels.reshape(-1), ignore_index=IGNORE, reduction="sum")
    return loss, int((shift_labels != IGNORE).sum())


def token_cross_entropy_at(logits: torch.Tensor, labels: torch.Tensor,
                           positions: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Like ``token_cross_entropy`` for logits computed only at ``positions``.

    logits (B, K, V) are the predictions made at positions (K,); their targets are
    labels[:, positions + 1].
    """
    targets = labels[:, positions + 1]  # (B, K)
    loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1),
                           ignore_index=IGNORE, reduction="sum")
    return loss, int((targets != IGNORE).sum())
