"""Run names from a request become paths only here: one folder below the root, no traversal."""

from __future__ import annotations

import re
from pathlib import Path

from lmlab.errors import UserError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def resolve_run(root: Path, name: str) -> Path:
    """``root/name`` for a plain folder name below ``root``; anything else (``..``, slashes,
    absolute paths, links that lead outside) raises UserError naming the value."""
    root = Path(root).resolve()
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise UserError(f"run: {name!r} is not a run folder name under {root}")
    path = (root / name).resolve()
    if path.parent != root:
        raise UserError(f"run: {name!r} leads outside {root}")
    return path
