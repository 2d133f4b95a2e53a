"""How many threads the C step uses, chosen from its own timings: greedy decode runs, and
batched steps (``serve``, sampling, speculative verification).

Each product of the C step ends at a barrier, so when another process keeps a core busy, the
thread the scheduler takes off that core holds the others at every barrier: on the 2-core
Xeon a batch-1 token took 250-400 ms at 2 threads with a ``while 1: pass`` process beside it,
against 10-20 ms idle (session 23, docs/hardware.md "Rows handed out in chunks"). One thread
fewer then leaves the busy core to the other process. The step's logits are the same at any
thread count, bit for bit (tests/infer/test_native_threads.py), so the choice changes speed
only.

``ThreadChoice`` is the rule, a pure object over measured seconds per token of runs (a greedy
C call of up to 16 tokens), one per model and weight precision for the process:

- the first run uses ``threads`` (torch's count), the second ``threads - 1``; then the count
  whose latest run was faster;
- every ``recheck`` runs the other count is tried once; where it loses again the interval
  doubles (up to ``most``), where it wins the choice changes and the interval starts over;
- a run slower than ``slow`` times the least seen at its count (a neighbour took a core)
  tries the other count at once.

Idle on 2 cores that costs one run at one thread per model, then one after 16 runs, 32, 64,
... and every 256 at most.

A batched step is one C call of a few ms whose time depends on its shape (inputs, rows of
logits), so ``Pooled`` feeds a ``ThreadChoice`` per shape class (``shape_class``) the mean of
``size`` steps at one count: one step is too short and too noisy to judge a count by.

``LMLAB_ADAPT_THREADS=0`` keeps torch's count (the decode benchmarks and the thread tests
set it, to run a fixed count).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def adapting() -> bool:
    """Whether the C step's greedy runs and batched steps choose their thread count
    (``LMLAB_ADAPT_THREADS``: 1, the default, or 0)."""
    want = os.environ.get("LMLAB_ADAPT_THREADS", "1").strip()
    if want not in ("0", "1"):
        raise ValueError(f"LMLAB_ADAPT_THREADS: 0 or 1, got {want!r}")
    return want == "1"


@dataclass
class ThreadChoice:
    threads: int
    slow: float = 2.0
    recheck: int = 16
    most: int = 256
    best: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)
    chosen: int = 0  # the count kept between tries
    trying: bool = False  # the next run tries the other count once
    since: int = 0  # runs since the other count was last tried
    every: int = 0  # the interval between tries now

    def __post_init__(self):
        self.threads = max(1, int(self.threads))
        self.chosen, self.every = self.threads, self.recheck

    def _other(self) -> int:
        return self.threads - 1 if self.chosen == self.threads else self.threads

    def pick(self) -> int:
        """The thread count for the next run."""
        return self._other() if self.trying else self.chosen

    def record(self, threads: int, seconds_per_token: float) -> None:
        """A run at ``threads`` took ``seconds_per_token``; sets the next run's count."""
        if self.threads == 1 or seconds_per_token <= 0:
            return
        t = seconds_per_token
        best = self.best.get(threads)
        self.best[threads] = t if best is None else min(best, t)
        self.last[threads] = t
        other = self._other()
        if threads == other:  # a try of the other count: keep the faster
            self.trying, self.since = False, 0
            if t < self.last.get(self.chosen, float("inf")):
                self.chosen, self.every = other, self.recheck
            else:
                self.every = min(self.most, 2 * self.every)
            return
        self.since += 1
        slowed = best is not None and t > self.slow * best
        if other not in self.last or slowed or self.since >= self.every:
            self.trying = True


@dataclass
class Pooled:
    """A ``ThreadChoice`` fed the mean seconds of ``size`` calls at a time (batched steps).
    ``pick`` only changes at a ``record`` of the choice, so the calls pooled all ran at one
    count."""

    choice: ThreadChoice
    size: int = 8
    n: int = 0
    total: float = 0.0

    def pick(self) -> int:
        return self.choice.pick()

    def record(self, threads: int, seconds: float) -> None:
        """A call at ``threads`` took ``seconds``; every ``size`` calls their mean is recorded."""
        self.n, self.total = self.n + 1, self.total + seconds
        if self.n >= self.size:
            self.choice.record(threads, self.total / self.n)
            self.n, self.total = 0, 0.0


def shape_class(inputs: int, rows: int) -> tuple[int, int]:
    """Which steps share a thread choice: those whose inputs (tokens through the layers) and
    rows of logits (or hidden states) fall in the same power-of-two class (a step's time grows
    with both; within a class it changes by less than 2x, the slowdown ``ThreadChoice`` reads
    as a busy core). The C step takes at most ``native.MAX_ROWS`` (24) inputs; 64 and more
    would be one class."""
    return min(inputs, 64).bit_length(), min(rows, 64).bit_length()
