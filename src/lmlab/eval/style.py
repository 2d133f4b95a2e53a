"""Style rules: a score per reply that a rule, not a model, computes. Used as metrics, as
preference labellers (``lmlab preferences labeller=rule``) and as the checkers of the built-in
style tasks (``task:concise``, ``task:positive``).

- ``concise``: 1.0 for a short reply without filler, lower for each filler phrase, each
  repeated sentence and each word past ``CONCISE_WORDS``; in [0, 1].
- ``positive``: VADER's compound sentiment (Hutto & Gilbert 2014; PyPI ``vaderSentiment``, a
  lexicon and rules, offline), in [-1, 1].
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable

from lmlab.errors import UserError

CONCISE_WORDS = 25  # words a reply may use before the length penalty starts
FILLERS = (
    "basically", "actually", "you know", "i mean", "kind of", "sort of", "to be honest",
    "as a matter of fact", "it is worth noting", "it's worth noting", "needless to say",
    "at the end of the day", "in my opinion", "let me think", "that being said", "as i said",
    "to put it simply", "long story short", "great question", "good question",
    "if you think about it", "in other words", "all in all", "as you may know",
    "as we all know", "i would say", "just to be clear", "for what it's worth",
)
_FILLER_RE = re.compile(r"\b(?:" + "|".join(re.escape(f) for f in FILLERS) + r")\b", re.I)
_END = re.compile(r"<\|im_end\|>.*", re.S)


def _clean(text: str) -> str:
    return _END.sub("", text).strip()


def filler_count(text: str) -> int:
    return len(_FILLER_RE.findall(text))


def repeated_sentences(text: str) -> int:
    """Sentences that say again, word for word, what an earlier sentence said."""
    seen, repeats = set(), 0
    for s in re.split(r"(?<=[.!?])\s+", text):
        key = re.sub(r"\W+", " ", s.lower()).strip()
        if key:
            repeats += key in seen
            seen.add(key)
    return repeats


def concise(text: str) -> float:
    """1 - 0.15 per filler - 0.2 per repeated sentence - 0.02 per word past CONCISE_WORDS,
    clamped to [0, 1]; an empty reply scores 0."""
    t = _clean(text)
    words = len(t.split())
    if not words:
        return 0.0
    score = 1.0 - 0.15 * filler_count(t) - 0.2 * repeated_sentences(t) \
        - 0.02 * max(0, words - CONCISE_WORDS)
    return min(1.0, max(0.0, score))


@lru_cache(maxsize=1)
def _vader():
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        raise UserError("the positive-sentiment rule needs VADER: pip install "
                        "'vaderSentiment==3.3.2' (or lmlab[style])") from None
    return SentimentIntensityAnalyzer()


def positive(text: str) -> float:
    """VADER compound sentiment of the reply, -1 (negative) .. 1 (positive)."""
    return float(_vader().polarity_scores(_clean(text))["compound"])


RULES: dict[str, Callable[[str], float]] = {"concise": concise, "positive": positive}


def get_rule(name: str) -> Callable[[str], float]:
    if name not in RULES:
        raise UserError(f"unknown style rule {name!r}; known: {', '.join(RULES)}")
    return RULES[name]


def style_scores(rule: str, texts: list[str]) -> dict:
    """Mean and per-reply scores of ``rule`` over ``texts`` (a metric for evaluations)."""
    fn = get_rule(rule)
    scores = [fn(t) for t in texts]
    return {"rule": rule, "mean": sum(scores) / len(scores) if scores else 0.0, "n": len(scores),
            "scores": scores}
