"""Report section for the studio's arena: the human votes beside the run folders
(``<runs>/arena-preferences.jsonl`` and its ``.ties.jsonl``), as wins per model."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from lmlab.report.collect import RunData
from lmlab.report.tables import Table

FILE = "arena-preferences.jsonl"


def _rows(path: Path) -> list[dict]:
    from lmlab.textfile import read_lines

    out = []
    for _, line in read_lines(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # the report shows what it can; `lmlab dpo` names a bad line
        if isinstance(row, dict) and isinstance(row.get("meta"), dict):
            out.append(row["meta"])
    return out


def vote_counts(path: Path) -> tuple[Counter, Counter, Counter]:
    """(wins, losses, ties) per model name from one preference file and its ties file."""
    from lmlab.studio.preferences import tie_file

    wins, losses, ties = Counter(), Counter(), Counter()
    for m in _rows(path) if path.is_file() else []:
        wins[str(m.get("chosen_model"))] += 1
        losses[str(m.get("rejected_model"))] += 1
    tied = tie_file(path)
    for m in _rows(tied) if tied.is_file() else []:
        for name in m.get("models") or []:
            ties[str(name)] += 1
    return wins, losses, ties


def arena_tables(runs: list[RunData]) -> list[Table]:
    tables = []
    for folder in sorted({r.path.parent for r in runs}):
        wins, losses, ties = vote_counts(folder / FILE)
        names = sorted(set(wins) | set(losses) | set(ties), key=lambda n: -wins[n])
        if not names:
            continue
        t = Table(f"Arena votes ({folder / FILE})", ["model", "votes", "wins", "losses", "ties",
                                                     "win rate"],
                  ["text", "int", "int", "int", "int", "pct"])
        for n in names:
            decided = wins[n] + losses[n]
            t.rows.append([n, decided + ties[n], wins[n], losses[n], ties[n],
                           wins[n] / decided if decided else None])
        t.note = ("Human votes from `lmlab studio`'s arena (two anonymous replies to one prompt). "
                  "Win rate: wins / (wins + losses); ties are kept apart. The pairs train "
                  f"`lmlab dpo data={folder / FILE}` and `lmlab reward` as they are.")
        tables.append(t)
    return tables
