"""Diversity of generated text: distinct-n (Li et al. 2016).

distinct-n is the number of different n-grams over the number of n-grams, counted over all the
completions together (corpus level), on token ids. 1.0 means no n-gram occurs twice; text that
loops, or completions that all say the same thing, score low. It says nothing about whether
the text is right: read it next to an accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence


def distinct_n(sequences: Sequence[Sequence[int]], n: int = 2) -> float | None:
    """Different n-grams / all n-grams over ``sequences`` (n-grams never cross two sequences);
    None when no sequence is n tokens long."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams = [tuple(s[i:i + n]) for s in sequences for i in range(len(s) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None
