"""The bad-input corpus: each case feeds lmlab one thing a user could get wrong and asserts the
same contract - a non-zero exit, a message that names the file / line / key / field, no
traceback, and nothing already written lost.

``fail`` runs the CLI in-process (fast: no interpreter start, no torch import per case);
``fail_subprocess`` runs ``python -m lmlab`` for the cases that need a real process (exit codes
from the interpreter, signals). Each returns a ``Failure``: ``assert fail(...).says(...)``.
``snapshot`` before and ``assert changes(folder, before) == []`` after check that files written
before the bad input are all still there, byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from lmlab.cli import main


@dataclass
class Failure:
    rc: int
    out: str
    err: str

    def says(self, *parts: str) -> bool:
        """Whether this is a clean failure (exit != 0, no traceback) whose message names every
        part (a file, a line as 'file:3', a key, a field): ``assert fail(...).says(...)``."""
        text = self.err + self.out
        return (self.rc != 0 and "Traceback" not in text
                and all(str(p) in text for p in parts))

    def __repr__(self) -> str:  # what pytest shows when ``says`` is false
        return f"Failure(rc={self.rc}, message={(self.err + self.out).strip()!r})"


def _check(rc: int, out: str, err: str, argv) -> Failure:
    assert rc != 0, f"lmlab {' '.join(map(str, argv))} exited 0:\n{out}\n{err}"
    assert "Traceback" not in err + out, f"a traceback for lmlab {argv}:\n{err}"
    return Failure(rc, out, err)


@pytest.fixture()
def fail(capsys):
    """``fail(*argv)``: run ``lmlab *argv`` in-process; it must fail cleanly."""

    def run(*argv) -> Failure:
        rc = main([str(a) for a in argv])
        cap = capsys.readouterr()
        return _check(rc, cap.out, cap.err, argv)

    return run


@pytest.fixture()
def fail_subprocess(tmp_path):
    """``fail_subprocess(*argv, cwd=None, timeout=120)``: ``python -m lmlab *argv`` in a child."""

    def run(*argv, cwd=None, timeout=120) -> Failure:
        env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        p = subprocess.run([sys.executable, "-m", "lmlab", *map(str, argv)], cwd=cwd or tmp_path,
                           env=env, capture_output=True, text=True, timeout=timeout)
        return _check(p.returncode, p.stdout, p.stderr, argv)

    return run


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` -> the sha256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def changes(folder: Path, before: dict[str, str]) -> list[str]:
    """The files of ``before`` that are gone from ``folder`` or hold other bytes now
    (``assert changes(run, before) == []``)."""
    after = snapshot(folder)
    return ([f"lost {f}" for f in before if f not in after]
            + [f"changed {f}" for f in before if f in after and after[f] != before[f]])
