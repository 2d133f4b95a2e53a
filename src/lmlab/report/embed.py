"""The report's embeddings section: retrieval tables of ``lmlab embed`` runs (BM25, the
encoder before and after training on the same held-out queries), ``lmlab index`` runs, and
the RAG measures of ``lmlab generate retrieve=...`` runs beside the same prompts without
retrieval. Every number is copied from summary.json."""

from __future__ import annotations

from lmlab.report.collect import RunData
from lmlab.report.tables import Table

METRICS = ("ndcg@10", "mrr@10", "recall@1", "recall@5", "recall@10")


def retrieval_table(runs: list[RunData]) -> Table | None:
    t = Table("Retrieval on held-out queries", ["run", "system", "collection", "nDCG@10",
                                                 "MRR@10", "recall@1", "recall@5", "recall@10"],
              ["text", "text", "text", "num", "num", "pct", "pct", "pct"])
    for r in runs:
        s = r.summary or {}
        table = s.get("retrieval") if r.stage == "embed" else None
        if not table:
            continue
        names = {"bm25": "BM25 (bm25s)", "before": f"{r.model} (untrained)",
                 "after": f"after lmlab embed ({s.get('objective')}, {s.get('steps')} steps)"}
        col = str(s.get("collection", "")).split(":")[0]
        for key, m in table.items():
            t.rows.append([r.label, names.get(key, key), col, *[m.get(k) for k in METRICS]])
    t.note = ("Binary relevance; nDCG@10 is BEIR/MTEB's main score. BM25 and the untrained "
              "encoder are measured in the same run on the same queries.")
    return t if t.rows else None


def rag_table(runs: list[RunData]) -> Table | None:
    t = Table("RAG: answers with and without retrieval", ["run", "model", "retrieve",
                                                          "prompts", "answer accuracy",
                                                          "retrieval hit", "cites a source",
                                                          "cited chunk holds answer"],
              ["text", "text", "text", "int", "pct", "pct", "pct", "pct"])
    for r in runs:
        s = r.summary or {}
        rag = s.get("rag") if r.stage == "generate" else None
        if not rag:
            continue
        t.rows.append([r.label, r.model, rag.get("retrieve") or "none", s.get("prompts"),
                       rag.get("answer_accuracy"), rag.get("retrieval_hit"),
                       rag.get("citation_rate"), rag.get("cited_holds_answer")])
    t.note = ("An answer counts when it appears in the reply (case and spacing aside); a "
              "retrieval hit when one of the retrieved chunks holds it.")
    return t if t.rows else None


def index_table(runs: list[RunData]) -> Table | None:
    t = Table("Indexes", ["run", "encoder", "documents", "chunks", "tokens/chunk", "overlap",
                          "chunks/s"], ["text", "text", "int", "int", "int", "int", "num"])
    for r in runs:
        s = r.summary or {}
        if r.stage == "index" and s:
            t.rows.append([r.label, r.model, s.get("docs"), s.get("chunks"),
                           s.get("chunk_tokens"), s.get("overlap"), s.get("chunks_per_s")])
    return t if t.rows else None


def embed_tables(runs: list[RunData]) -> list[Table]:
    return [t for t in (retrieval_table(runs), rag_table(runs), index_table(runs)) if t]
