"""Building preference pairs from sampled replies: prompts in, labellers, pairs out.

A labeller scores every sampled reply of a prompt; ``make_pairs`` turns the scores into
``{prompt, chosen, rejected}`` pairs, dropping (and counting) ties. Labellers, each a callable
``(prompts, rows, texts) -> scores`` over flat lists (one entry per sampled reply):

- ``TaskLabeller``: the built-in task's checker (1.0 correct, 0.0 wrong).
- ``RewardLabeller``: a trained reward model's score (``lmlab reward``).
- ``JudgeLabeller``: a judge model on a rubric, pointwise (its score) or pairwise (wins over
  the prompt's other replies, each pair judged in both orders).
- ``RuleLabeller``: a style rule from ``lmlab.eval.style`` (concise, positive).

A score of ``None`` (a judge answer that could not be read) leaves that reply out, counted.
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path
from typing import Callable

from lmlab.errors import DataError, UserError
from lmlab.textfile import read_lines

PAIRING = ("best_worst", "all")

Labeller = Callable[[list, list[dict], list[str]], list]  # (prompts, rows, texts) -> scores


# --- prompts --------------------------------------------------------------------------------------


def load_prompt_rows(source: str, *, split: str = "train", limit: int | None = None) -> list[dict]:
    """Rows with a ``prompt`` (text or messages); task rows keep ``answer`` and ``task``.

    source: ``task:<name>[,...]`` (``split`` of the built-in tasks), a ``.jsonl`` file of
    ``{prompt}`` / ``{messages}`` objects (extra keys kept; a trailing assistant turn is
    dropped), or a ``.txt`` file with one prompt a line."""
    if source.startswith("task:"):
        from lmlab.data import load_rows

        return list(load_rows(source, "task", split=split, limit=limit))
    path = Path(source)
    if not path.is_file():
        raise DataError("no such file (expected task:<name>, a .jsonl or a .txt file of prompts)",
                        file=source)
    if path.suffix not in (".txt", ".jsonl"):
        raise DataError("prompts must be task:<name>, a .jsonl or a .txt file", file=source)
    lines = [(n, line) for n, line in read_lines(path) if line.strip()]  # BOM, CRLF: as plain
    if path.suffix == ".txt":
        rows = [{"prompt": line.strip()} for _, line in lines]
    else:
        rows = [_prompt_row(line, source, n) for n, line in lines]
    if not rows:
        raise DataError("no prompts (the file is empty)", file=source)
    return rows[:limit] if limit else rows


def _prompt_row(line: str, file: str, n: int) -> dict:
    from lmlab.data.formats import _messages

    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON ({e.msg})", file=file, line=n) from None
    if not isinstance(row, dict):
        raise DataError("expected a JSON object", file=file, line=n)
    where = _Where(file, n)
    if isinstance(row.get("prompt"), str):
        if not row["prompt"].strip():
            raise DataError("is empty", file=file, line=n, field="prompt")
        return row
    key = "prompt" if isinstance(row.get("prompt"), list) else "messages"
    if row.get(key) is None:
        raise DataError("missing: expected 'prompt' (text or messages) or 'messages'",
                        file=file, line=n, field="prompt")
    msgs = _messages(row[key], key, where)
    if msgs[-1]["role"] == "assistant":  # a finished chat: the prompt is what came before
        msgs = msgs[:-1]
    if not msgs:
        raise DataError("has no turn before the assistant's", file=file, line=n, field=key)
    return {**row, "prompt": msgs}


class _Where:
    def __init__(self, file, line):
        self.file, self.line = file, line

    def error(self, field, message):
        return DataError(message, file=self.file, line=self.line, field=field)


# --- labellers ------------------------------------------------------------------------------------


class TaskLabeller:
    """1.0 when the task's checker accepts the reply, else 0.0; rows need ``task``, ``answer``."""

    def __init__(self, rows: list[dict]):
        from lmlab.data.tasks import get_task

        for i, r in enumerate(rows):
            if "task" not in r or "answer" not in r:
                raise UserError(f"labeller=task needs task prompts (data=task:<name>, or rows "
                                f"with 'task' and 'answer'); prompt {i} has neither")
            get_task(r["task"])  # an unknown task name fails now

    def __call__(self, prompts, rows, texts):
        from lmlab.data.tasks import get_task

        return [float(get_task(r["task"]).check(t, r["answer"])) for r, t in zip(rows, texts)]


class RewardLabeller:
    def __init__(self, reward_model, batch_size: int = 16):
        self.rm, self.batch_size = reward_model, batch_size

    def __call__(self, prompts, rows, texts):
        return self.rm.score(prompts, texts, batch_size=self.batch_size)


class RuleLabeller:
    def __init__(self, rule: str):
        from lmlab.eval.style import get_rule

        self.rule = get_rule(rule)

    def __call__(self, prompts, rows, texts):
        return [self.rule(t) for t in texts]


class JudgeLabeller:
    """Pointwise: the judge's score of each reply. Pairwise: each reply's number of wins against
    the prompt's other replies (a win needs the judge to agree in both orders)."""

    def __init__(self, judge, mode: str = "pointwise", n: int = 2):
        if mode not in ("pointwise", "pairwise"):
            raise UserError(f"judge mode must be pointwise or pairwise, got {mode!r}")
        self.judge, self.mode, self.n = judge, mode, n  # n: replies per prompt, consecutive
        self.consistent = self.compared = 0

    def __call__(self, prompts, rows, texts):
        if self.mode == "pointwise":
            return self.judge.score(prompts, texts)
        groups = [range(s, s + self.n) for s in range(0, len(texts), self.n)]
        jobs = [(g[i], g[j]) for g in groups for i, j in combinations(range(len(g)), 2)]
        verdicts = self.judge.compare([prompts[a] for a, _ in jobs], [texts[a] for a, _ in jobs],
                                      [texts[b] for _, b in jobs])
        wins = [0.0] * len(texts)
        for (a, b), v in zip(jobs, verdicts):
            self.compared += 1
            if v.winner is not None:
                self.consistent += 1
                wins[a if v.winner == 0 else b] += 1
        return wins


# --- pairs ----------------------------------------------------------------------------------------


def make_pairs(texts: list[str], scores: list, *, pairing: str = "best_worst",
               min_margin: float = 0.0) -> tuple[list[tuple[int, int]], dict]:
    """(chosen index, rejected index) pairs among one prompt's replies, and counts.

    best_worst: the highest-scored reply over the lowest (one pair; the first of equals).
    all: every two replies whose scores differ by more than ``min_margin``.
    A gap of ``min_margin`` or less is a tie: no pair, counted in ``ties``. Replies without a
    score (``unscored``) and pairs of identical texts (``identical``) are left out, counted.
    """
    if pairing not in PAIRING:
        raise UserError(f"pairing must be one of {', '.join(PAIRING)}, got {pairing!r}")
    stats = {"ties": 0, "unscored": sum(s is None for s in scores), "identical": 0}
    idx = [i for i, s in enumerate(scores) if s is not None]
    if pairing == "best_worst":
        candidates = []
        if len(idx) >= 2:
            best = max(idx, key=lambda i: scores[i])
            worst = min(idx, key=lambda i: scores[i])
            candidates = [(best, worst)]
    else:
        candidates = [(i, j) if scores[i] >= scores[j] else (j, i)
                      for i, j in combinations(idx, 2)]
    pairs = []
    for c, r in candidates:
        if scores[c] - scores[r] <= min_margin:
            stats["ties"] += 1
        elif texts[c].strip() == texts[r].strip():
            stats["identical"] += 1
        else:
            pairs.append((c, r))
    return pairs, stats
