"""`lmlab index`: a dense index over a folder of documents, saved in a run folder.

Setup (read the documents, load the encoder), then chunk (windows of ``chunk_tokens`` encoder
tokens overlapping by ``overlap``), embed and save ``index/`` (see ``lmlab.embed.index``);
``query=...`` prints the best chunks for a question. ``lmlab generate retrieve=<this run>``
answers from it (RAG).
"""

from __future__ import annotations

from dataclasses import dataclass

from lmlab.config import RunConfig, opt

HELP = "index a folder of documents: chunk with overlap, embed, exact search (for RAG)"


@dataclass
class Config(RunConfig):
    UNUSED = ("max_steps", "resume")  # no optimizer steps; an index is built in one go
    model: str = opt("minilm", "encoder: minilm, tiny:bert, an `lmlab embed` run folder, an "
                               "encoder folder, or org/name")
    data: str = opt("", "the folder of documents (every file under it; hidden ones aside), or "
                        "collection:<chatterbot|gsm8k> (its documents; its held-out questions "
                        "are written to questions.jsonl for RAG evaluation)")
    chunk_tokens: int = opt(128, "tokens per chunk (the encoder's context minus 2 at most)",
                            min=8)
    overlap: int = opt(32, "tokens shared by consecutive chunks", min=0)
    on_binary: str = opt("skip", "binary files in the folder: skip them (one warning naming "
                                 "them) or stop", choices=("skip", "error"))
    batch_size: int = opt(32, "chunks per forward pass", min=1)
    query: str = opt("", "print the top_k chunks for this query once the index is built")
    top_k: int = opt(3, "chunks shown for query", min=1)
    device: str = opt("auto", "cpu | cuda | mps | auto")
    progress: bool = opt(True, "show a progress bar")

    def validate(self) -> list[str]:
        p = []
        if not self.data:
            p.append("data: the folder of documents to index (data=<folder>)")
        if self.overlap >= self.chunk_tokens:
            p.append(f"overlap: {self.overlap} must be below chunk_tokens ({self.chunk_tokens})")
        return p


def encoder_reference(ref: str) -> str:
    """``ref`` as the index records it: folders absolute, so the index loads from anywhere."""
    from pathlib import Path

    from lmlab.embed.model import resolve_encoder

    r = resolve_encoder(ref)
    return str(Path(r.path).resolve()) if r.kind == "folder" else ref


def run(cfg: Config) -> dict:
    import time

    from lmlab.common import pick_device, print0, seed_everything
    from lmlab.embed.index import build_index
    from lmlab.embed.model import context_length, load_encoder
    from lmlab.errors import ConfigError
    from lmlab.runs import prepare_run

    ref = encoder_reference(cfg.model)
    docs, questions = _documents(cfg)  # before the run folder is touched
    device = pick_device(cfg.device)
    encoder, tokenizer = load_encoder(ref, device=device)
    ctx = context_length(encoder, tokenizer)
    if cfg.chunk_tokens > ctx - 2:
        raise ConfigError(f"chunk_tokens: {cfg.chunk_tokens} is over what {cfg.model} reads "
                          f"({ctx} tokens with [CLS] and [SEP]: at most {ctx - 2})")
    run_ = prepare_run(cfg, "index")
    seed_everything(cfg.seed)
    t0 = time.perf_counter()
    index = build_index(encoder, tokenizer, docs, size=cfg.chunk_tokens, overlap=cfg.overlap,
                        batch_size=cfg.batch_size, progress=cfg.progress,
                        meta={"encoder": ref, "source": cfg.data})
    seconds = time.perf_counter() - t0
    index.save(run_.path / "index")
    if questions:
        run_.write_jsonl("questions.jsonl", questions)
    summary = {"stage": "index", "model": cfg.model, "docs": len(docs),
               "chunks": len(index.chunks), "dim": index.meta["dim"],
               "chunk_tokens": cfg.chunk_tokens, "overlap": cfg.overlap,
               "seconds": round(seconds, 2),
               "chunks_per_s": round(len(index.chunks) / max(seconds, 1e-9), 1)}
    print0(f"[lmlab] index: {len(docs)} documents -> {len(index.chunks)} chunks of <= "
           f"{cfg.chunk_tokens} tokens (overlap {cfg.overlap}) in {seconds:.1f} s")
    if cfg.query:
        from lmlab.embed.rag import Retriever

        hits = Retriever(index, encoder, tokenizer).retrieve([cfg.query], cfg.top_k)[0]
        summary["query"] = {"text": cfg.query, "hits": hits}
        for i, h in enumerate(hits, 1):
            print0(f"  [{i}] {h['score']:.3f} {h['doc']}:{h['start']}-{h['end']}  "
                   f"{h['text'][:100]!r}")
    run_.write_json("summary.json", summary)
    print0(f"[lmlab] wrote {run_.path}/ (index/, summary.json"
           + (", questions.jsonl for `lmlab generate retrieve=...`)" if questions else ")"))
    return summary


def _documents(cfg: Config) -> tuple[list[tuple[str, str]], list[dict]]:
    """(name, text) of each document, and the RAG questions of a collection ([] for folders)."""
    from lmlab.embed.index import read_documents

    if not cfg.data.startswith("collection:"):
        return read_documents(cfg.data, on_binary=cfg.on_binary), []
    from lmlab.embed.collections import load_collection, qa_rows

    col = load_collection(cfg.data.split(":", 1)[1])
    return list(col.docs.items()), qa_rows(col)
