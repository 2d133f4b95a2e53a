"""RAG: prompts with numbered sources, citations, the measures, and `lmlab generate
retrieve=<index run>` end to end on the tiny models (plumbing, not quality)."""

import json

import pytest

from lmlab.cli import main
from lmlab.embed.rag import cited, holds, mark, rag_prompt, summarize

SOURCES = [{"doc": "a.txt", "text": "The capital of Freedonia is Glorpville."},
           {"doc": "b.txt", "text": "Sylvania exports cheese."}]


def test_prompt_numbers_the_sources_and_asks_for_citations():
    p = rag_prompt("What is the capital of Freedonia?", SOURCES)
    assert "[1] (a.txt) The capital of Freedonia is Glorpville." in p
    assert "[2] (b.txt) Sylvania exports cheese." in p
    assert p.endswith("Question: What is the capital of Freedonia?") and "like [1]" in p


def test_citations_in_range_once_in_order():
    assert cited("Glorpville [2][1], see [2] and [7] and [0].", 2) == [2, 1]
    assert cited("no citation", 3) == []


def test_mark_and_summarize_by_hand():
    right = mark({"completion": "It is glorpville  [1].", "answer": "Glorpville",
                  "sources": SOURCES})
    wrong_cite = mark({"completion": "Glorpville, says [2]", "answer": "Glorpville",
                       "sources": SOURCES})
    no_rag = mark({"completion": "I do not know", "answer": "Glorpville"})
    assert right["cited"] == [1] and right["cited_holds_answer"] and right["answer_correct"]
    assert wrong_cite["retrieval_hit"] and not wrong_cite["cited_holds_answer"]
    assert "cited" not in no_rag and not no_rag["answer_correct"]
    s = summarize([right, wrong_cite, no_rag])
    assert s["answer_accuracy"] == pytest.approx(2 / 3)
    assert s["cited_holds_answer"] == 0.5 and s["retrieval_hit"] == 1.0
    assert s["citation_rate"] == 1.0 and s["retrieved_k"] == 2
    assert holds("x 1,450,000 y", "1,450,000") and not holds("abc", "")


def test_generate_with_retrieve_runs_on_tiny_models(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The capital of Freedonia is Glorpville.")
    (docs / "b.txt").write_text("Sylvania exports cheese and violins.")
    index = tmp_path / "index"
    assert main(["index", "model=tiny:bert", f"data={docs}", f"output_dir={index}",
                 "chunk_tokens=16", "overlap=4", "progress=false"]) == 0
    qs = tmp_path / "q.jsonl"
    qs.write_text(json.dumps({"prompt": "What is the capital of Freedonia?",
                              "answer": "Glorpville"}) + "\n"
                  + json.dumps({"prompt": "What does Sylvania export?", "answer": "cheese"})
                  + "\n")
    runs = {}
    for name, extra in (("rag", [f"retrieve={index}", "retrieve_k=2"]), ("plain", [])):
        out = tmp_path / name
        assert main(["generate", "model=tiny:llama", f"data={qs}", f"output_dir={out}",
                     "strategy=greedy", "max_new_tokens=4", *extra]) == 0
        runs[name] = (json.loads((out / "summary.json").read_text()),
                      [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()])
    summary, samples = runs["rag"]
    assert summary["rag"]["retrieved_k"] == 2 and summary["rag"]["retrieval_hit"] == 1.0
    assert set(summary["rag"]) >= {"answer_accuracy", "citation_rate", "cited_holds_answer"}
    s0 = samples[0]
    assert s0["question"] == "What is the capital of Freedonia?" and len(s0["sources"]) == 2
    assert "[1] (" in s0["prompt"] and isinstance(s0["cited"], list)
    plain, plain_samples = runs["plain"]
    assert plain["rag"]["retrieve"] is None and "answer_accuracy" in plain["rag"]
    assert "sources" not in plain_samples[0]
