"""Named places where a test can have the process killed with SIGKILL, to prove that a kill at
any of them leaves a run folder that ``resume=auto`` continues exactly
(tests/train/test_kill.py).

Off unless the environment sets ``LMLAB_KILL_AT=<point>:<n>``: then the n-th time (counting
from 1) this process passes ``<point>``, it kills itself. ``LMLAB_KILL_LOG=<file>`` appends the
name of every point passed, one per line, so a test can see what a whole run passes through.
"""

from __future__ import annotations

import os
import signal

_passed: dict[str, int] = {}


def armed(point: str) -> bool:
    """Count a pass through ``point``; True when this pass is the one to kill at."""
    log = os.environ.get("LMLAB_KILL_LOG")
    spec = os.environ.get("LMLAB_KILL_AT")
    if not (log or spec):
        return False
    if log:
        with open(log, "a") as f:
            f.write(point + "\n")
    _passed[point] = _passed.get(point, 0) + 1
    name, _, n = (spec or "").rpartition(":")
    return name == point and n.isdigit() and _passed[point] == int(n)


def kill_now() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def killpoint(point: str) -> None:
    """Die here when the test asked for this pass through ``point``."""
    if armed(point):
        kill_now()


class KillMidWrite:
    """A file wrapper that dies after a few writes: a file half written when the kill came."""

    def __init__(self, f, after: int = 3):
        self.f, self.left = f, after

    def write(self, b) -> int:
        if self.left == 0:
            self.f.flush()
            kill_now()
        self.left -= 1
        return self.f.write(b)

    def flush(self) -> None:
        self.f.flush()
