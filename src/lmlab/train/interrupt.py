"""Ctrl-C in a training loop: the first one asks the loop to stop at the end of the step in
flight and save a checkpoint there; a second one quits at once.

The step in flight is finished, not abandoned: by then it has drawn its batch, consumed RNG and
accumulated gradients, and undoing that would need a copy of the state taken before it. A
checkpoint at a step boundary is a state the uninterrupted run also passes through, so
``resume=auto`` from it reaches exactly the same weights. One step on a CPU takes seconds; the
second Ctrl-C is there for when that is too long.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable


class TrainingInterrupted(KeyboardInterrupt):
    """The loop stopped for a Ctrl-C after saving a checkpoint; the message says where."""

    @classmethod
    def at(cls, step: int, total: int, checkpoints) -> "TrainingInterrupted":
        """Stopped after ``step`` of ``total``, saved as ``checkpoints/step-<step>``; the
        message is what the CLI prints after 'lmlab: '."""
        return cls(f"interrupted at step {step} of {total}; saved {checkpoints}/step-{step} "
                   f"(resume=auto continues from it)")


class StopRequest:
    """``with StopRequest(last_checkpoint) as stop:`` turns the first SIGINT into
    ``stop.requested`` (checked by the loop at each step boundary) and prints one line; a second
    SIGINT raises ``KeyboardInterrupt`` at once, naming the last checkpoint on disk
    (``last_checkpoint()``). Only the main thread can own signal handlers: elsewhere this does
    nothing. The previous handler is restored on exit."""

    def __init__(self, last_checkpoint: Callable[[], object] | None = None):
        self.last_checkpoint = last_checkpoint or (lambda: None)
        self.requested = False
        self._previous = None
        self._installed = False

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc) -> bool:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False
        return False

    def _handle(self, signum, frame) -> None:
        if self.requested:
            last = self.last_checkpoint()
            raise KeyboardInterrupt(
                "interrupted again: quit without saving; "
                + (f"the last checkpoint is {last} (resume=auto continues from it)" if last
                   else "no checkpoint was written yet"))
        self.requested = True
        # os.write, not print: the handler may run while the loop is inside a write to stderr
        # (the progress bar), and a buffered stream refuses a re-entrant write
        lead = "\n" if sys.stderr.isatty() else ""
        os.write(2, (f"{lead}[lmlab] Ctrl-C: finishing this step, then saving a checkpoint "
                     f"(Ctrl-C again quits at once, without saving)\n").encode())

    def agreed(self, device) -> bool:
        """Whether any rank was asked to stop (the same answer on every rank, so all of them
        stop at the same step); ``requested`` when not distributed."""
        from lmlab.train.distributed import all_reduce_sum

        return all_reduce_sum(int(self.requested), device) > 0
