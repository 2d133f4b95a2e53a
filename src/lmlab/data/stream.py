"""The packed token stream of pretraining: documents joined into one tensor, sampled as windows.

Every document is written as ``<eos> doc``: the separator *starts* each document, so with
``isolate_docs`` each document is a segment that begins at its separator and the separator's
prediction (the end of the previous document) is made from the previous document alone.

``TokenStream`` draws ``batch_size`` random windows of ``window + 1`` tokens per micro-batch
(nanoGPT's sampling) from ``tokens.unfold(...)``, a strided view: one gather per batch and no
per-window Python. The start offsets of batch ``i`` come from a generator seeded by
``(seed, i)``, so the position ``i`` is the whole resume state and rank ``r`` of ``world``
takes the r-th slice of the global batch.

Legend: N tokens in the stream, B batch, T window (the model's input length).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lmlab.errors import DataError


def join_documents(docs: list[list[int]], eos_id: int) -> torch.Tensor:
    """``<eos> d0 <eos> d1 ...`` as one (N,) int64 tensor."""
    out: list[int] = []
    for d in docs:
        out.append(eos_id)
        out += d
    return torch.tensor(out, dtype=torch.long)


def batch_seed(seed: int, index: int) -> int:
    """A 63-bit seed for micro-batch ``index`` of a run seeded ``seed`` (splitmix-style mix)."""
    x = (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9 + 1) & ((1 << 64) - 1)
    x ^= x >> 31
    x = (x * 0x94D049BB133111EB) & ((1 << 64) - 1)
    return (x ^ (x >> 29)) & ((1 << 63) - 1)


class TokenStream:
    """Random windows from a token tensor, as micro-batches built by ``make_batch``.

    ``make_batch(windows (B, T+1), seed)`` turns raw windows into the model's inputs (the
    objective's corruption lives there); ``seed`` is this batch's own, for seeded masking."""

    def __init__(self, tokens: torch.Tensor, window: int, batch_size: int,
                 make_batch: Callable[[torch.Tensor, int], dict], *, seed: int = 0,
                 rank: int = 0, world: int = 1, what: str = "the training text"):
        if tokens.numel() < window + 2:
            raise DataError(f"{what} has {tokens.numel()} tokens, fewer than one window of "
                            f"max_len + 1 = {window + 1}: add text or lower max_len")
        self.windows = tokens.unfold(0, window + 1, 1)  # (N - T, T + 1), a view
        self.batch_size, self.make_batch = batch_size, make_batch
        self.seed, self.rank, self.world = seed, rank, world
        self.pos = 0

    def starts(self, index: int) -> torch.Tensor:
        """Window offsets of global micro-batch ``index``, this rank's slice: (B,)."""
        g = torch.Generator().manual_seed(batch_seed(self.seed, index))
        every = torch.randint(self.windows.size(0), (self.batch_size * self.world,), generator=g)
        return every[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]

    def next(self) -> dict:
        w = self.windows[self.starts(self.pos)]  # (B, T + 1): the one copy
        batch = self.make_batch(w, batch_seed(self.seed + 1, self.pos * self.world + self.rank))
        self.pos += 1
        return batch

    def state_dict(self) -> dict:
        return {"pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.pos = int(state["pos"])


def eval_windows(tokens: torch.Tensor, window: int) -> list[torch.Tensor]:
    """Windows of ``window + 1`` tokens overlapping by one, so that every token but the first
    is predicted exactly once; the last window may be shorter. Each (L,) with L >= 2."""
    n = tokens.numel()
    return [tokens[i:i + window + 1] for i in range(0, n - 1, window)
            if tokens[i:i + window + 1].numel() >= 2]


def segments(ids: torch.Tensor, eos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(segment index, position within segment) of every token of ids (B, T).

    A segment starts at each ``eos_id`` (the separator that begins a document); a window that
    starts inside a document counts from 0 there."""
    starts = ids == eos_id  # (B, T)
    seg = starts.long().cumsum(dim=1)
    t = torch.arange(ids.size(1), device=ids.device).expand_as(ids)
    first = torch.where(starts, t, torch.zeros_like(t)).cummax(dim=1).values
    return seg, t - first


def document_mask(seg: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """(B, 1, T, T) bool, True where query i may attend key j: same segment (and j <= i)."""
    same = seg[:, :, None] == seg[:, None, :]  # (B, T, T)
    if causal:
        T = seg.size(1)
        same &= torch.ones(T, T, dtype=torch.bool, device=seg.device).tril()
    return same[:, None]
