"""Multi-task mixtures and replay: draw each training example from one of several sources.

Sources come from the ``data`` string (``split_sources``): ``task:add,sort`` is two sources,
``rows.jsonl,task:add`` too. Mixing probabilities (``mixture_probs``): explicit weights, or
temperature sampling p_i ∝ n_i^(1/T) (T=1: proportional to size; large T: towards uniform;
Arivazhagan et al. 2019 use T=5 for many languages).

Which source example ``k`` (counting every example drawn, all ranks together) comes from is a
pure function of k: ``draw_source`` for a random mixture (a seeded uniform per k), ``is_replay``
for replay, exact rather than random: of the first K examples exactly floor(K * fraction) are
replayed, spread evenly. ``MixtureStream`` walks each source in its own seeded order.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable

import torch


def split_sources(data: str) -> list[str]:
    """``task:add,sort`` -> [task:add, task:sort]; ``a.jsonl,task:add,sort,b.csv`` ->
    [a.jsonl, task:add, task:sort, b.csv]: a bare name right after a task is a task too;
    ``task:all`` is one source per built-in task. Options after a task group's last name apply
    to the whole group, as they do when the string is read as one source:
    ``task:add,sort?cot=1`` -> [task:add?cot=1, task:sort?cot=1]."""
    from lmlab.data.tasks import task_names

    out: list[str] = []
    group: list[int] = []  # indices in out of the current task group's names
    for part in (p.strip() for p in data.split(",")):
        if not part:
            continue
        if part.startswith("task:"):
            group = [len(out)]
            out.append(part)
        elif group and "." not in part and "/" not in part:
            group.append(len(out))
            out.append("task:" + part)
        else:
            group = []
            out.append(part)
        if group and "?" in out[-1]:  # the group's options: every name of it gets them
            query = out[-1].split("?", 1)[1]
            for i in group[:-1]:
                out[i] += "?" + query
            group = []
    expanded = []
    for s in out:
        name, mark, query = s.partition("?")
        expanded.append([f"task:{t}{mark}{query}" for t in task_names()]
                        if name == "task:all" else [s])
    return list(dict.fromkeys(s for group in expanded for s in group))


def mixture_probs(sizes: list[int], weights: list[float] | None = None,
                  temperature: float = 1.0) -> list[float]:
    """Sampling probability per source: ``weights`` normalized, else p_i ∝ n_i^(1/T)."""
    if weights:
        if len(weights) != len(sizes):
            raise ValueError(f"{len(weights)} weights for {len(sizes)} sources")
        raw = [float(w) for w in weights]
    else:
        raw = [float(n) ** (1.0 / temperature) for n in sizes]
    total = sum(raw)
    if total <= 0 or any(w < 0 for w in raw):
        raise ValueError(f"weights must be >= 0 with a positive sum, got {raw}")
    return [w / total for w in raw]


def draw_source(k: int, probs: list[float], seed: int = 0) -> int:
    """The source of example ``k``: inverse CDF of a uniform seeded by (seed, k)."""
    cum = [sum(probs[:i + 1]) for i in range(len(probs))]
    u = random.Random(f"lmlab.mixture:{seed}:{k}").random() * cum[-1]
    return min(bisect.bisect_right(cum, u), len(probs) - 1)


def is_replay(k: int, fraction: float) -> bool:
    """Whether example ``k`` is a replayed one: floor((k+1) f) > floor(k f), so the first K
    examples hold exactly floor(K f) replayed ones, evenly spread."""
    return math.floor((k + 1) * fraction + 1e-9) > math.floor(k * fraction + 1e-9)


class MixtureStream:
    """Micro-batches whose example ``k`` comes from source ``choose(k)``.

    Each source is walked in a seeded permutation, reshuffled per pass over it (its own epoch),
    so a small source repeats and a large one is seen in order. All ranks advance every cursor
    and rank ``r`` keeps the r-th slice of each global micro-batch. State: the examples drawn
    so far and each source's (epoch, position).
    """

    def __init__(self, groups: list[list], batch_size: int, collate: Callable[[list], dict], *,
                 choose: Callable[[int], int], seed: int = 0, rank: int = 0, world: int = 1):
        from lmlab.train.data import clamp_batch_size

        batch_size, note = clamp_batch_size(sum(len(g) for g in groups), batch_size, world)
        if note:
            from lmlab.common import print0

            print0(note)
        if any(not g for g in groups):
            raise ValueError("a mixture source has no examples")
        self.groups, self.batch_size, self.collate = groups, batch_size, collate
        self.choose, self.seed, self.rank, self.world = choose, seed, rank, world
        self.k = 0
        self.cursors = [[0, 0] for _ in groups]
        self._orders = [self._order(i, 0) for i in range(len(groups))]

    def _order(self, i: int, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed((self.seed * 100_003 + epoch) * 1_009 + i)
        return torch.randperm(len(self.groups[i]), generator=g).tolist()

    def _take(self, i: int):
        epoch, pos = self.cursors[i]
        if pos >= len(self.groups[i]):
            epoch, pos = epoch + 1, 0
            self._orders[i] = self._order(i, epoch)
        self.cursors[i] = [epoch, pos + 1]
        return self.groups[i][self._orders[i][pos]]

    def next_sources(self) -> list[int]:
        """The sources of the next global micro-batch (advances the stream)."""
        out = [self.choose(self.k + j) for j in range(self.batch_size * self.world)]
        self.k += len(out)
        return out

    def next(self) -> dict:
        picked = [self._take(i) for i in self.next_sources()]
        mine = picked[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
        return self.collate(mine)

    def state_dict(self) -> dict:
        return {"k": self.k, "cursors": [list(c) for c in self.cursors]}

    def load_state_dict(self, state: dict) -> None:
        self.k = int(state["k"])
        self.cursors = [[int(e), int(p)] for e, p in state["cursors"]]
        self._orders = [self._order(i, c[0]) for i, c in enumerate(self.cursors)]
