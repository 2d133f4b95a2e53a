"""The report's embeddings section from fixture run folders: the retrieval table (BM25,
before, after), RAG with and without retrieval, and indexes."""

from lmlab.report import build_report

from .test_report import write_run

M = {"ndcg@10": 0.5, "mrr@10": 0.4, "recall@1": 0.3, "recall@5": 0.6, "recall@10": 0.7}


def test_embed_section(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs / "embed-a", "embed", {"model": "minilm"}, {
        "stage": "embed", "objective": "mnrl", "steps": 60,
        "collection": "chatterbot: 870 documents, 224 held-out queries, 625 training pairs",
        "retrieval": {"bm25": {**M, "ndcg@10": 0.222}, "before": {**M, "ndcg@10": 0.522},
                      "after": {**M, "ndcg@10": 0.601}}})
    write_run(runs / "index-a", "index", {"model": "minilm"}, {
        "stage": "index", "docs": 2, "chunks": 9, "chunk_tokens": 128, "overlap": 32,
        "chunks_per_s": 50.0})
    for name, retrieve in (("gen-rag", "runs/index-a"), ("gen-plain", None)):
        write_run(runs / name, "generate", {"model": "tiny:llama"}, {
            "stage": "generate", "prompts": 4, "rag": {
                "retrieve": retrieve, "answer_accuracy": 0.75 if retrieve else 0.25,
                **({"retrieval_hit": 1.0, "citation_rate": 0.5, "cited_holds_answer": 0.5}
                   if retrieve else {})}})
    build_report([runs], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Embeddings, retrieval and RAG" in md
    for text in ("BM25 (bm25s)", "0.222", "minilm (untrained)", "0.522",
                 "after lmlab embed (mnrl, 60 steps)", "0.601", "chatterbot",
                 "75.0%", "25.0%", "runs/index-a", "Indexes"):
        assert text in md, text
