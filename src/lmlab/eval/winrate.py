"""Pairwise win rate of model A over model B on the same prompts, with ties, and a percentile
bootstrap confidence interval over prompts.

Per prompt, an outcome o in {1 (A wins), 0.5 (tie), 0 (B wins)}; win rate = mean(o), i.e.
(wins + ties / 2) / n. The CI resamples prompts with replacement ``n_boot`` times (seeded).
"""

from __future__ import annotations

from lmlab.eval.intervals import bootstrap_ci


def outcomes(scores_a: list[float], scores_b: list[float], *, tie_margin: float = 0.0) -> list[float]:
    """1 / 0.5 / 0 per prompt from two score lists (higher is better); |a - b| <= tie_margin
    is a tie."""
    if len(scores_a) != len(scores_b):
        raise ValueError(f"{len(scores_a)} scores for A but {len(scores_b)} for B")
    return [0.5 if abs(a - b) <= tie_margin else float(a > b) for a, b in zip(scores_a, scores_b)]


def win_rate(outs: list[float], *, n_boot: int = 2000, seed: int = 0) -> dict:
    """{n, wins, ties, losses, win_rate, ci95} from per-prompt outcomes."""
    n = len(outs)
    return {"n": n, "wins": sum(o == 1 for o in outs), "ties": sum(o == 0.5 for o in outs),
            "losses": sum(o == 0 for o in outs),
            "win_rate": sum(outs) / n if n else None,
            "ci95": list(bootstrap_ci(outs, n_boot=n_boot, seed=seed) or []) or None}
