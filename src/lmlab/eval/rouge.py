"""ROUGE-L between two texts, as a pure function: the F1 of their longest common subsequence.

Tokens as ``rouge-score`` makes them without a stemmer: lower-cased, every character that is
not a letter or a digit is a space, the rest split on spaces. With ``m`` reference tokens,
``n`` candidate tokens and ``L`` their longest common subsequence (not necessarily
contiguous): precision ``L / n``, recall ``L / m``, ROUGE-L ``2PR / (P + R)`` (0 when ``L`` is
0). Self-instruct (Wang et al. 2022) keeps a generated instruction only when its ROUGE-L with
every instruction already in the pool is below 0.7. ``lmlab.eval.overlap.rouge_l`` (the
corpus mean through ``rouge-score``) is the metric for evaluation; this one is its twin for
filters, tested equal to it.
"""

from __future__ import annotations

import re

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def tokens(text: str) -> list[str]:
    return _NON_ALNUM.sub(" ", text.lower()).split()


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists (O(len(a) * len(b)))."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l_tokens(candidate: list[str], reference: list[str]) -> float:
    common = lcs_length(candidate, reference)
    if common == 0:
        return 0.0
    precision, recall = common / len(candidate), common / len(reference)
    return 2 * precision * recall / (precision + recall)


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 of two texts (symmetric; 0.0 when either has no tokens)."""
    return rouge_l_tokens(tokens(candidate), tokens(reference))


def max_rouge_l(candidate: str, pool: list[list[str]]) -> float:
    """The highest ROUGE-L of ``candidate`` against any tokenized text of ``pool`` (0.0 for an
    empty pool)."""
    toks = tokens(candidate)
    return max((rouge_l_tokens(toks, ref) for ref in pool), default=0.0)
