"""Reference overlap: ROUGE-L (``rouge-score``) and corpus BLEU (``sacrebleu``); and n-gram
overlap between training data and an eval set (contamination, ``ngram_overlap``).

Each prediction may have several references. ROUGE-L is the best F-measure over a
prediction's references, averaged over predictions (0-1). BLEU is sacreBLEU's corpus BLEU
(0-100) with every reference stream; a prediction with fewer references than the most has its
last one repeated (sacreBLEU needs equal-length streams and counts duplicates once).
"""

from __future__ import annotations

import re

CONTAMINATION_N = 13  # word n-grams, as in the GPT-3 paper's decontamination
_WORDS = re.compile(r"\w+")


def _check(predictions: list[str], references: list[list[str]]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if any(not refs for refs in references):
        raise ValueError("every prediction needs at least one reference")


def rouge_l(predictions: list[str], references: list[list[str]]) -> float | None:
    """Mean over predictions of the best ROUGE-L F1 against its references."""
    from rouge_score import rouge_scorer

    _check(predictions, references)
    if not predictions:
        return None
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    best = [max(scorer.score(r, p)["rougeL"].fmeasure for r in refs)
            for p, refs in zip(predictions, references)]
    return sum(best) / len(best)


def bleu(predictions: list[str], references: list[list[str]]) -> float | None:
    """sacreBLEU corpus BLEU (0-100, default 13a tokenizer, exponential smoothing)."""
    import sacrebleu

    _check(predictions, references)
    if not predictions:
        return None
    k = max(len(r) for r in references)
    streams = [[refs[min(j, len(refs) - 1)] for refs in references] for j in range(k)]
    return float(sacrebleu.corpus_bleu(predictions, streams).score)


# --- contamination ----------------------------------------------------------------------------


def words(text: str) -> list[str]:
    """Lower-cased word tokens (runs of letters, digits, underscore); punctuation is dropped."""
    return _WORDS.findall(text.lower())


def ngrams(text: str, n: int = CONTAMINATION_N) -> set[tuple[str, ...]]:
    """The set of word ``n``-grams of ``text``; a text shorter than ``n`` words gives one gram,
    all of its words (so a short eval item overlaps when it appears whole in training)."""
    w = words(text)
    if not w:
        return set()
    if len(w) < n:
        return {tuple(w)}
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def _grams_of(texts_words: list[list[str]], k: int) -> set[tuple[str, ...]]:
    return {tuple(w[i:i + k]) for w in texts_words for i in range(len(w) - k + 1)}


def ngram_overlap(train_texts: list[str], eval_texts: list[str],
                  n: int = CONTAMINATION_N) -> dict:
    """How many eval items share a word ``n``-gram with the training texts.

    ``{"n", "items", "overlapping", "share", "examples"}``: ``overlapping`` counts eval items
    with at least one ``n``-gram that occurs in any training text (an item shorter than ``n``
    words counts when its whole word sequence occurs in one); ``examples`` holds up to three
    overlapping items.
    """
    train_words = [words(t) for t in train_texts]
    by_length: dict[int, set] = {n: _grams_of(train_words, n)}  # k-grams, built when needed
    hits = []
    for text in eval_texts:
        for g in ngrams(text, n):
            if len(g) not in by_length:
                by_length[len(g)] = _grams_of(train_words, len(g))
            if g in by_length[len(g)]:
                hits.append(text)
                break
    k = len(eval_texts)
    return {"n": n, "items": k, "overlapping": len(hits),
            "share": len(hits) / k if k else 0.0, "examples": hits[:3]}
