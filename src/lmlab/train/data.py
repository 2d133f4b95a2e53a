"""A deterministic, resumable, rank-aware stream of micro-batches."""

from __future__ import annotations

from typing import Callable

import torch

from lmlab.errors import UserError


def clamp_batch_size(n: int, batch_size: int, world: int = 1, name: str = "batch_size",
                     noun: str = "training examples") -> tuple[int, str | None]:
    """(the per-process batch size that ``n`` examples can fill, the line that says so or None).

    ``n >= batch_size * world`` keeps ``batch_size``; fewer clamp it to ``n // world`` (every
    process takes the same number, so the global batch stays ``batch * world``); no examples,
    or fewer than one a process, is a UserError."""
    if n <= 0:
        raise UserError(f"no {noun}: the data is empty after loading (check the file, "
                        "data_limit, and the rows skipped as too long)")
    if n >= batch_size * world:
        return batch_size, None
    if n < world:
        raise UserError(f"only {n} {noun}, fewer than the {world} processes (each needs at "
                        "least one); add data or run fewer processes")
    clamped = n // world
    per = f" x {world} processes" if world > 1 else ""
    return clamped, (f"[lmlab] {n} {noun}, fewer than {name}={batch_size}{per}: "
                     f"using {name}={clamped}")


class BatchStream:
    """Yields micro-batches in a seeded order that depends only on (seed, epoch).

    Every global micro-batch holds ``world * batch_size`` examples; rank ``r`` takes the r-th
    slice, so 2 ranks x batch b see exactly the examples that 1 rank x batch 2b sees. The tail
    of an epoch that cannot fill a global micro-batch is skipped (counted in ``dropped``), and
    the position (epoch, offset) is the whole state needed to resume.

    Fewer examples than one global batch (a user's first 3-row file) clamp the batch to what
    the data fills, said in one line (``clamp_batch_size``); no examples at all is an error.
    ``name`` is the option the batch size came from and ``noun`` what an example is, for that
    line.

    ``lengths`` (one per example) turns on length grouping: the shuffled order is cut into
    windows of ``group_window`` global batches, each window is sorted by length and its batches
    are shuffled again, so a batch holds examples of similar length (less padding) while the
    order of lengths stays random. Still a function of (seed, epoch) only.
    """

    def __init__(self, examples: list, batch_size: int, collate: Callable[[list], dict], *,
                 seed: int = 0, shuffle: bool = True, rank: int = 0, world: int = 1,
                 lengths: list[int] | None = None, group_window: int = 16,
                 name: str = "batch_size", noun: str = "training examples"):
        batch_size, note = clamp_batch_size(len(examples), batch_size, world, name, noun)
        if note:
            from lmlab.common import print0

            print0(note)
        self.examples, self.batch_size, self.collate = examples, batch_size, collate
        self.seed, self.shuffle, self.rank, self.world = seed, shuffle, rank, world
        if lengths is not None and len(lengths) != len(examples):
            raise ValueError(f"{len(lengths)} lengths for {len(examples)} examples")
        self.lengths, self.group_window = lengths, group_window
        self.epoch, self.pos = 0, 0
        self._order = self._make_order()

    def _make_order(self) -> list[int]:
        if not self.shuffle:
            return list(range(len(self.examples)))
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.examples), generator=g).tolist()
        return self._grouped(order, g) if self.lengths is not None else order

    def _grouped(self, order: list[int], g: torch.Generator) -> list[int]:
        gb = self.global_batch
        out: list[int] = []
        for s in range(0, len(order), gb * self.group_window):
            window = sorted(order[s:s + gb * self.group_window], key=lambda i: self.lengths[i])
            batches = [window[k:k + gb] for k in range(0, len(window), gb)]
            full = [b for b in batches if len(b) == gb]  # a short tail batch stays last
            for j in torch.randperm(len(full), generator=g).tolist():
                out += full[j]
            out += [i for b in batches if len(b) < gb for i in b]
        return out

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world

    def next(self) -> dict:
        if self.pos + self.global_batch > len(self._order):
            self.epoch, self.pos = self.epoch + 1, 0
            self._order = self._make_order()
        start = self.pos + self.rank * self.batch_size
        idx = self._order[start:start + self.batch_size]
        self.pos += self.global_batch
        return self.collate([self.examples[i] for i in idx])

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._order = self._make_order()
