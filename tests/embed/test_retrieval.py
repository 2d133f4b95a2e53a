"""Ranking metrics on hand-made rankings; the collections' held-out split."""

import math

import pytest
import torch

from lmlab.embed.retrieval import mrr_at_k, ndcg_at_k, recall_at_k, score_run, top_k


def test_recall_at_k():
    ranked = ["a", "b", "c", "d"]
    assert recall_at_k(ranked, {"b", "d"}, 1) == 0.0
    assert recall_at_k(ranked, {"b", "d"}, 2) == 0.5
    assert recall_at_k(ranked, {"b", "d"}, 4) == 1.0
    assert recall_at_k(ranked, {"z"}, 10) == 0.0


def test_mrr_counts_the_first_relevant_within_k():
    assert mrr_at_k(["a", "b", "c"], {"c", "b"}) == 0.5
    assert mrr_at_k(["a", "b", "c"], {"a"}) == 1.0
    assert mrr_at_k([str(i) for i in range(20)], {"12"}) == 0.0  # rank 13 is past 10
    assert mrr_at_k([str(i) for i in range(20)], {"12"}, k=20) == 1 / 13


def test_ndcg_by_hand():
    # relevant at ranks 2 and 3 of 2 relevant: DCG = 1/log2(3) + 1/log2(4), ideal 1 + 1/log2(3)
    got = ndcg_at_k(["x", "a", "b", "y"], {"a", "b"})
    assert got == pytest.approx((1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3)), rel=1e-12)
    assert ndcg_at_k(["a", "b"], {"a", "b"}) == 1.0
    assert ndcg_at_k(["x"] * 10 + ["a"], {"a"}) == 0.0
    # more relevant docs than k: the ideal has k hits
    assert ndcg_at_k([str(i) for i in range(10)], {str(i) for i in range(15)}) == \
        pytest.approx(1.0, rel=1e-12)


def test_score_run_means_over_qrels_and_scores_missing_queries_zero():
    qrels = {"q1": {"a"}, "q2": {"b"}}
    s = score_run({"q1": ["a", "b"]}, qrels)
    assert s["recall@1"] == 0.5 and s["mrr@10"] == 0.5 and s["ndcg@10"] == 0.5


def test_top_k_is_exact():
    docs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    scores, idx = top_k(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), docs, 2)
    assert idx.tolist() == [[1, 2], [0, 2]]
    assert scores.flatten().tolist() == pytest.approx([1.0, 0.8, 1.0, 0.6], abs=1e-6)


def test_split_holds_out_queries_and_their_documents():
    from lmlab.embed.collections import split

    pairs = {f"q{i}": [f"doc{i}", "shared"] if i % 3 == 0 else [f"doc{i}"] for i in range(10)}
    col = split("toy", pairs, 0.3, seed=0)
    assert len(col.queries) == 3 and len(col.docs) == 11
    held_q = set(col.queries.values())
    held_docs = {col.docs[d] for rel in col.qrels.values() for d in rel}
    assert all(p["anchor"] not in held_q for p in col.train_pairs)
    assert all(p["positive"] not in held_docs for p in col.train_pairs)
    for qid, q in col.queries.items():
        assert {col.docs[d] for d in col.qrels[qid]} == set(pairs[q])


@pytest.mark.parametrize("name", ["chatterbot", "gsm8k"])
def test_packaged_collections_are_real_and_held_out(name):
    from lmlab.embed.collections import load_collection, qa_rows

    col = load_collection(name)
    assert len(col.queries) > 200 and len(col.docs) > 800 and len(col.train_pairs) > 500
    assert not {p["anchor"] for p in col.train_pairs} & set(col.queries.values())
    qa = qa_rows(col)
    assert len(qa) == len(col.queries)
    if name == "gsm8k":  # the final number, which the relevant solution holds
        assert all(r["answer"].replace(",", "").lstrip("-").replace(".", "").isdigit() for r in qa)
