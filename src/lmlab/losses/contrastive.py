"""Contrastive losses over embeddings: InfoNCE with in-batch negatives (+ hard negatives).

Legend: B anchors, N >= B candidates, D embedding width. Candidate i is anchor i's positive
(rows 0..B-1); the other rows (the other anchors' positives and any hard negatives) are its
negatives. With cosine similarity s and a scale (inverse temperature) ``scale = 1 / tau``::

    loss_i = -log softmax_j(scale * s(a_i, c_j))[i]

This is sentence-transformers' MultipleNegativesRankingLoss (its default scale is 20, i.e.
tau = 0.05, the SimCSE temperature) and, with the positive being the anchor itself seen
through another dropout mask, unsupervised SimCSE (Gao et al., 2021).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_scores(anchors: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """(B, N) cosine similarities of anchors (B, D) and candidates (N, D)."""
    a = F.normalize(anchors, dim=-1)
    c = F.normalize(candidates, dim=-1)
    return a @ c.T  # (B, N)


def info_nce(anchors: torch.Tensor, candidates: torch.Tensor, scale: float | torch.Tensor = 20.0
             ) -> torch.Tensor:
    """Per-anchor InfoNCE losses (B,): candidate i is the positive of anchor i."""
    b, n = anchors.shape[0], candidates.shape[0]
    if n < b:
        raise ValueError(f"{n} candidates for {b} anchors: each anchor needs its positive")
    logits = cosine_scores(anchors, candidates) * scale  # (B, N)
    labels = torch.arange(b, device=anchors.device)
    return F.cross_entropy(logits, labels, reduction="none")


def in_batch_accuracy(anchors: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """(B,) 1.0 where an anchor's own positive scores highest among all candidates."""
    scores = cosine_scores(anchors, candidates)
    return (scores.argmax(dim=1) == torch.arange(anchors.shape[0], device=scores.device)).float()


def clip_loss(images: torch.Tensor, texts: torch.Tensor, scale: float | torch.Tensor
              ) -> torch.Tensor:
    """Per-pair symmetric InfoNCE (B,) of CLIP (Radford et al., 2021): image i's positive is
    text i among the batch's texts and text i's is image i among its images, each direction
    ``info_nce`` over the other side; the pair's loss is their mean. ``scale`` is CLIP's
    ``logit_scale.exp()`` (learned; 1 / temperature)."""
    return (info_nce(images, texts, scale) + info_nce(texts, images, scale)) / 2
