"""Retrieval-augmented generation: retrieve the top-k chunks of an index, put them in the
prompt as numbered sources, ask for citations, and measure the answers.

A row with ``prompt`` (the question) becomes a row whose ``prompt`` holds the sources and the
question, with ``question`` and ``sources`` (doc, span, score and text of each chunk) kept for
``samples.jsonl``. A generated reply cites sources as ``[n]``.

Measures (rows that carry the ``answer``): ``answer_accuracy`` (the answer appears in the
reply, case and spacing aside), ``retrieval_hit`` (one of the k chunks holds the answer),
``citation_rate`` (the reply cites a given source) and ``cited_holds_answer`` (a source it cites
holds the answer). The same rows generated without ``retrieve`` give the accuracy without
retrieval.
"""

from __future__ import annotations

import re

import torch

INSTRUCTION = ("Answer the question using the sources below. Cite the sources you use by "
               "their number in brackets, like [1].")
CITATION = re.compile(r"\[(\d+)\]")


class Retriever:
    """An index and the encoder that made it: queries in, the best chunks out."""

    def __init__(self, index, encoder, tokenizer):
        self.index, self.encoder, self.tokenizer = index, encoder, tokenizer

    @classmethod
    def from_run(cls, path: str, device: str | torch.device = "cpu") -> Retriever:
        from lmlab.embed.index import Index
        from lmlab.embed.model import load_encoder

        index = Index.load(path)
        encoder, tokenizer = load_encoder(index.meta["encoder"], device=device)
        return cls(index, encoder, tokenizer)

    def retrieve(self, queries: list[str], k: int) -> list[list[dict]]:
        """Per query: the k best chunks, {rank, score, doc, start, end, text}, best first.
        Queries longer than the encoder's context are cut to it with a warning."""
        from lmlab.embed.model import encode

        q = encode(self.encoder, self.tokenizer, queries, what="queries")
        q = torch.nn.functional.normalize(q, dim=-1)
        out = []
        for hits in self.index.search(q, k):
            out.append([{"rank": r, "score": round(s, 6), **self.index.chunks[i]}
                        for r, (i, s) in enumerate(hits, 1)])
        return out


def rag_prompt(question: str, sources: list[dict]) -> str:
    body = "\n\n".join(f"[{i}] ({s['doc']}) {s['text'].strip()}"
                       for i, s in enumerate(sources, 1))
    return f"{INSTRUCTION}\n\n{body}\n\nQuestion: {question}"


def augment(rows: list[dict], retriever: Retriever, k: int) -> list[dict]:
    """The rows with their sources retrieved and put in the prompt (text prompts only)."""
    from lmlab.errors import DataError

    questions = []
    for i, r in enumerate(rows):
        p = r["prompt"]
        if isinstance(p, list):  # a chat: retrieve for its last user message
            users = [m["content"] for m in p if m.get("role") == "user"]
            if not users or not isinstance(users[-1], str):
                raise DataError(f"prompt {i + 1}: retrieve needs a text question (a prompt or "
                                "a chat that ends with a user message)")
            p = users[-1]
        questions.append(p)
    hits = retriever.retrieve(questions, k)
    out = []
    for r, q, h in zip(rows, questions, hits):
        prompt = rag_prompt(q, h)
        if isinstance(r["prompt"], list):
            last = max(i for i, m in enumerate(r["prompt"]) if m.get("role") == "user")
            prompt = [*r["prompt"][:last], {"role": "user", "content": prompt},
                      *r["prompt"][last + 1:]]
        out.append({**r, "prompt": prompt, "question": q, "sources": h})
    return type(rows)(out, rows.where) if hasattr(rows, "where") else out


def _norm(text: str) -> str:
    return " ".join(str(text).lower().split())


def holds(text: str, answer: str) -> bool:
    """``answer`` occurs in ``text``, case and runs of spaces aside."""
    return bool(_norm(answer)) and _norm(answer) in _norm(text)


def cited(completion: str, n_sources: int) -> list[int]:
    """The source numbers (1-based) a reply cites, in order, each once, in range."""
    seen: list[int] = []
    for m in CITATION.finditer(completion):
        i = int(m.group(1))
        if 1 <= i <= n_sources and i not in seen:
            seen.append(i)
    return seen


def mark(sample: dict) -> dict:
    """A sample's RAG fields: its citations, and against its ``answer`` (when it has one)
    whether the reply, the retrieved and the cited chunks hold it."""
    sources = sample.get("sources") or []
    if sources:
        sample["cited"] = cited(sample["completion"], len(sources))
    if isinstance(sample.get("answer"), str) and "task" not in sample:
        ans = sample["answer"]
        sample["answer_correct"] = holds(sample["completion"], ans)
        if sources:
            sample["retrieval_hit"] = any(holds(s["text"], ans) for s in sources)
            sample["cited_holds_answer"] = any(holds(sources[i - 1]["text"], ans)
                                               for i in sample["cited"])
    return sample


def summarize(samples: list[dict]) -> dict:
    """Mean RAG measures over the samples that have them ({} when none do)."""
    out = {}
    for key, name in (("answer_correct", "answer_accuracy"), ("retrieval_hit", "retrieval_hit"),
                      ("cited_holds_answer", "cited_holds_answer")):
        vals = [s[key] for s in samples if key in s]
        if vals:
            out[name] = sum(vals) / len(vals)
    with_sources = [s for s in samples if s.get("sources")]
    if with_sources:
        out["citation_rate"] = sum(bool(s["cited"]) for s in with_sources) / len(with_sources)
        out["retrieved_k"] = len(with_sources[0]["sources"])
    return out
