"""How many threads a greedy decode run of the C step uses, chosen from its own timings.

Each product of the C step ends at a barrier, so when another process keeps a core busy, the
thread the scheduler takes off that core holds the others at every barrier: on the 2-core
Xeon a batch-1 token took 250-400 ms at 2 threads with a ``while 1: pass`` process beside it,
against 10-20 ms idle (session 23, docs/hardware.md "Rows handed out in chunks"). One thread
fewer then leaves the busy core to the other process. The step's logits are the same at any
thread count, bit for bit (tests/infer/test_native_threads.py), so the choice changes speed
only.

``ThreadChoice`` is the rule, a pure object over measured seconds per token:

- it starts at ``threads`` (torch's count) and remembers the least seconds per token seen at
  each count;
- a run slower than ``slow`` times the least seen at its count (a neighbour took a core, or
  the machine is loaded) tries the other count (``threads - 1``) next;
- then it keeps whichever count's latest run was faster, and, while on the fewer threads,
  tries the full count again every ``recheck`` runs (the neighbour may have gone).

Idle, nothing is tried: a run is never ``slow`` times its own best unless something
changed. ``LMLAB_ADAPT_THREADS=0`` keeps torch's count (the benchmarks set it, to time a
fixed count).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def adapting() -> bool:
    """Whether greedy runs choose their thread count (``LMLAB_ADAPT_THREADS`` not 0)."""
    return os.environ.get("LMLAB_ADAPT_THREADS", "1") != "0"


@dataclass
class ThreadChoice:
    threads: int
    slow: float = 2.0
    recheck: int = 16
    best: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)
    current: int = 0
    since: int = 0  # runs on the fewer threads since the full count was tried

    def __post_init__(self):
        self.threads = max(1, int(self.threads))
        self.current = self.threads

    @property
    def other(self) -> int:
        return self.threads - 1 if self.current == self.threads else self.threads

    def pick(self) -> int:
        """The thread count for the next run."""
        return self.current

    def record(self, threads: int, seconds_per_token: float) -> None:
        """A run at ``threads`` took ``seconds_per_token``; sets the next run's count."""
        if self.threads == 1 or seconds_per_token <= 0:
            return
        t = seconds_per_token
        best = self.best.get(threads)
        self.best[threads] = t if best is None else min(best, t)
        self.last[threads] = t
        if threads != self.current:
            return
        other = self.other
        if other not in self.last:  # not tried yet: only when this count has slowed
            if best is not None and t > self.slow * best:
                self.current = other
            return
        if self.last[other] < t:  # the other count's latest run was faster
            self.current, self.since = other, 0
            return
        if self.current != self.threads:
            self.since += 1
            if self.since >= self.recheck:  # the full count again: has the load gone?
                self.current, self.since = self.threads, 0
