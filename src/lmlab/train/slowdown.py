"""A hint, once a run, when its steps slow down several-fold: on a small CPU that is usually
another process taking a core.

torch's threads wait for each other at the end of every parallel operation, so when another
process keeps one of two cores busy a training step at 2 threads takes several times as long
(SmolLM2 full SFT at libgomp's default spin: 38 tok/s against ~350 idle, session 24;
docs/hardware.md "A busy core"). The command line shortens the spin where it sees that load
as it starts (``lmlab.openmp``), but load that comes later is not seen, and the run only looks
slow. ``SlowWatch`` notices it from the steps' own rates; ``hint`` says what to do.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass
class SlowWatch:
    """True once, at the ``run``-th step in a row whose rate is below the run's best over
    ``ratio`` (the first steps, a compile's, only set a low best; later faster steps raise it).
    Steps shorter than ``min_s`` are not judged (a tiny model's steps of a few ms vary
    several-fold with a page fault or a collection: noise, not a neighbour)."""

    ratio: float = 3.0
    run: int = 3
    min_s: float = 0.2
    best: float = 0.0
    slow: int = 0
    said: bool = False

    def see(self, rate: float, seconds: float) -> bool:
        """A step's rate (tokens a second) and its length; whether to say so now."""
        if self.said or rate <= 0 or seconds < self.min_s:
            return False
        self.best = max(self.best, rate)
        self.slow = self.slow + 1 if rate * self.ratio < self.best else 0
        self.said = self.slow >= self.run
        return self.said


def hint(slower: float, environ: Mapping[str, str] | None = None) -> str:
    """The line to print for steps ``slower`` times the run's best."""
    env = os.environ if environ is None else environ
    line = (f"[lmlab] the last steps ran {slower:.0f}x slower than this run's best: another "
            f"process may be busy on this machine. ")
    if "GOMP_SPINCOUNT" in env or "OMP_WAIT_POLICY" in env:
        return line + "OMP_NUM_THREADS set to one fewer than the cores leaves it a core."
    return line + ("Started with GOMP_SPINCOUNT=10000 (lmlab sets it when it sees the load as a "
                   "command starts), threads sleep sooner at barriers: ~4x faster beside a busy "
                   "core (docs/hardware.md).")
