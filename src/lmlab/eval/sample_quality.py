"""Sample quality of a small generating model, as one number: the share of its words that are
real words (seen in the training text). A char-level model first learns letters and spaces,
then real words, then grammar; at the budgets of the paradigms comparison the second step is
where models differ. Held-out human text sets the ceiling (its words unseen in training are
rare names and forms), a uniform random string the floor (~0)."""

from __future__ import annotations

from lmlab.eval.probe import plain_words


def word_vocab(texts: list[str]) -> set[str]:
    """Every lowercased word (``probe.plain_words``) in ``texts``."""
    return {w for t in texts for w in plain_words(t)}


def known_word_rate(texts: list[str], vocab: set[str]) -> float | None:
    """Fraction of the words in ``texts`` that are in ``vocab`` (None: no words at all)."""
    words = [w for t in texts for w in plain_words(t)]
    return sum(w in vocab for w in words) / len(words) if words else None
