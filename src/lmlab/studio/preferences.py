"""Arena pairs and the votes on them.

A pair (one prompt, two models' replies, shown as A and B in a random order) waits in memory
until it is voted on. A vote for A or B appends one preference row to a JSONL file that
``lmlab dpo`` and ``lmlab reward`` read as ``data=<file>``::

    {"prompt": "...", "chosen": "...", "rejected": "...",
     "meta": {"chosen_model": ..., "rejected_model": ..., "time": ..., "pair": ..., ...}}

(``prompt`` is a message list when the pair had a system prompt.) The readers take the three
fields and ignore ``meta``. A tie teaches no direction, so it goes to a second file beside the
first (``<name>.ties.jsonl``) that no stage reads; two identical replies can't be voted on.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from lmlab.errors import UserError

MAX_OPEN = 256  # pairs waiting for a vote; the oldest is forgotten beyond this


class UnknownPair(UserError):
    http_status = 404


@dataclass
class Pair:
    prompt: str | list[dict]
    replies: dict[str, str]  # "A" / "B" -> text
    models: dict[str, str]  # "A" / "B" -> model name (shown only after the vote)
    knobs: dict
    created: float = field(default_factory=time.time)


def tie_file(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".jsonl") + ".ties.jsonl")


class Arena:
    """Open pairs, and the files their votes go to."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.pairs: OrderedDict[str, Pair] = OrderedDict()
        self.lock = threading.Lock()

    def open(self, pair: Pair) -> str:
        pid = secrets.token_hex(8)
        with self.lock:
            self.pairs[pid] = pair
            while len(self.pairs) > MAX_OPEN:
                self.pairs.popitem(last=False)
        return pid

    def vote(self, pid: str, winner: str) -> dict:
        """Record ``winner`` (A | B | tie) for pair ``pid``; returns what was written and
        where. A pair takes one vote."""
        if winner not in ("A", "B", "tie"):
            raise UserError(f"winner: expected A, B or tie, got {winner!r}")
        with self.lock:
            pair = self.pairs.get(pid)
            if pair is None:
                raise UnknownPair(f"pair: {pid!r} is not an open arena pair (unknown, "
                                  "already voted on, or from before a restart)")
            if winner != "tie" and pair.replies["A"] == pair.replies["B"]:
                raise UserError("winner: the two replies are identical, so the pair teaches "
                                "nothing; vote tie or ask again (with temperature > 0)")
            del self.pairs[pid]
            row, path = self._row(pid, pair, winner)
            self._append(path, row)
        return {"file": str(path), "row": row, "models": pair.models}

    def _row(self, pid: str, pair: Pair, winner: str) -> tuple[dict, Path]:
        meta = {"pair": pid, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "decoding": pair.knobs, "source": "lmlab studio arena"}
        if winner == "tie":
            row = {"prompt": pair.prompt, "replies": [pair.replies["A"], pair.replies["B"]],
                   "meta": {**meta, "models": [pair.models["A"], pair.models["B"]]}}
            return row, tie_file(self.path)
        loser = "B" if winner == "A" else "A"
        row = {"prompt": pair.prompt, "chosen": pair.replies[winner],
               "rejected": pair.replies[loser],
               "meta": {**meta, "chosen_model": pair.models[winner],
                        "rejected_model": pair.models[loser]}}
        return row, self.path

    @staticmethod
    def _append(path: Path, row: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def arena(ctx) -> Arena:
    """The context's arena; its file is ``ctx.extra["preferences_file"]`` or
    ``<root>/arena-preferences.jsonl``."""
    if "arena" not in ctx.extra:
        path = ctx.extra.get("preferences_file") or Path(ctx.root) / "arena-preferences.jsonl"
        ctx.extra["arena"] = Arena(Path(path))
    return ctx.extra["arena"]
