"""Retrieval evaluation: ranking metrics (pure functions), dense exact search, BM25, and one
table of all of them on a held-out collection.

Metrics, for one query with ranked doc ids and a set of relevant ids (binary relevance):

    recall@k = |relevant in the top k| / |relevant|
    MRR@10   = 1 / rank of the first relevant doc in the top 10 (0 if none)
    nDCG@10  = DCG / ideal DCG,  DCG = sum_{i < 10, doc_i relevant} 1 / log2(i + 2)

nDCG@10 is the main score of BEIR and MTEB retrieval. A system's score is the mean over
queries.
"""

from __future__ import annotations

import math

import torch

KS = (1, 5, 10)


def recall_at_k(ranked: list[str], relevant: set[str], k: int) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else 0.0


def mrr_at_k(ranked: list[str], relevant: set[str], k: int = 10) -> float:
    for i, d in enumerate(ranked[:k]):
        if d in relevant:
            return 1.0 / (i + 1)
    return 0.0


def ndcg_at_k(ranked: list[str], relevant: set[str], k: int = 10) -> float:
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal if ideal else 0.0


def score_run(run: dict[str, list[str]], qrels: dict[str, set[str]]) -> dict[str, float]:
    """Mean recall@{1,5,10}, MRR@10 and nDCG@10 of ``run`` (query id -> ranked doc ids) over
    the queries of ``qrels`` (a query missing from the run scores 0)."""
    out = {f"recall@{k}": 0.0 for k in KS} | {"mrr@10": 0.0, "ndcg@10": 0.0}
    for q, rel in qrels.items():
        ranked = run.get(q, [])
        for k in KS:
            out[f"recall@{k}"] += recall_at_k(ranked, rel, k)
        out["mrr@10"] += mrr_at_k(ranked, rel)
        out["ndcg@10"] += ndcg_at_k(ranked, rel)
    return {k: v / max(1, len(qrels)) for k, v in out.items()}


def top_k(queries: torch.Tensor, docs: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact inner-product search: (scores, indices), both (Q, min(k, N)), best first."""
    scores = queries @ docs.T  # (Q, N)
    return scores.topk(min(k, docs.shape[0]), dim=1)


def dense_run(encoder, tokenizer, collection, *, k: int = 10, batch_size: int = 64,
              max_len: int = 256) -> dict[str, list[str]]:
    from lmlab.embed.model import encode

    doc_ids = list(collection.docs)
    docs = encode(encoder, tokenizer, [collection.docs[d] for d in doc_ids],
                  batch_size=batch_size, max_len=max_len, on_long="quiet")
    qids = list(collection.queries)
    qs = encode(encoder, tokenizer, [collection.queries[q] for q in qids],
                batch_size=batch_size, max_len=max_len, on_long="quiet")
    _, idx = top_k(qs, docs, k)
    return {q: [doc_ids[j] for j in row] for q, row in zip(qids, idx.tolist())}


def bm25_run(collection, *, k: int = 10) -> dict[str, list[str]]:
    """BM25 (bm25s, its default k1=1.5, b=0.75; English stop words removed)."""
    import bm25s

    doc_ids = list(collection.docs)
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([collection.docs[d] for d in doc_ids], stopwords="en",
                                   show_progress=False), show_progress=False)
    qids = list(collection.queries)
    tokens = bm25s.tokenize([collection.queries[q] for q in qids], stopwords="en",
                            show_progress=False)
    idx, _ = retriever.retrieve(tokens, k=min(k, len(doc_ids)), show_progress=False)
    return {q: [doc_ids[j] for j in row] for q, row in zip(qids, idx.tolist())}


def evaluate_dense(encoder, tokenizer, collection, **kw) -> dict[str, float]:
    return score_run(dense_run(encoder, tokenizer, collection, **kw), collection.qrels)


def evaluate_bm25(collection) -> dict[str, float]:
    return score_run(bm25_run(collection), collection.qrels)
