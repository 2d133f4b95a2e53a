"""Reference overlap: ROUGE-L (``rouge-score``) and corpus BLEU (``sacrebleu``).

Each prediction may have several references. ROUGE-L is the best F-measure over a
prediction's references, averaged over predictions (0-1). BLEU is sacreBLEU's corpus BLEU
(0-100) with every reference stream; a prediction with fewer references than the most has its
last one repeated (sacreBLEU needs equal-length streams and counts duplicates once).
"""

from __future__ import annotations


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
