"""A dense index over a folder of documents: read, chunk with overlap, embed, exact search.

Chunks are windows of ``size`` encoder tokens that overlap by ``overlap`` tokens (so a fact cut
at one boundary is whole in the next chunk); a chunk's text is the document's own characters
from its first token to its last (via the tokenizer's offsets), so citations quote the source
exactly. Search is exact: one (Q, H) x (H, N) product on normalised embeddings (cosine) and a
top-k; at the sizes lmlab builds (thousands of chunks) that takes milliseconds.

Saved as ``<run>/index/``: ``embeddings.safetensors`` (N, H) float32, ``chunks.jsonl`` (doc,
start, end, text per chunk, in row order) and ``meta.json`` (the encoder reference and the
chunking).
"""

from __future__ import annotations

import itertools
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lmlab.errors import DataError

SNIFF_BYTES = 8192  # a NUL byte in the first 8 KiB marks a binary file (as git and grep do)


def windows(n: int, size: int, overlap: int, cuts: list[bool] | None = None
            ) -> list[tuple[int, int]]:
    """[start, end) token windows covering 0..n: each at most ``size`` tokens, each ending
    after the one before, consecutive ones sharing up to ``overlap`` tokens.

    ``cuts[i]`` (n + 1 flags) says whether a window may begin or end at token i: windows are
    packed from whole words (the runs between allowed cuts), and only a word longer than
    ``size`` is cut inside."""
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"need size >= 1 and 0 <= overlap < size, got {size}, {overlap}")
    ok = cuts or [True] * (n + 1)
    bounds = [i for i in range(n + 1) if ok[i] or i in (0, n)]
    units = [(s, min(s + size, b)) for a, b in itertools.pairwise(bounds)
             for s in range(a, b, size)]  # words, a long one in size-token pieces
    out, u = [], 0
    while u < len(units):
        v = u + 1
        while v < len(units) and units[v][1] - units[u][0] <= size:
            v += 1
        out.append((units[u][0], units[v - 1][1]))
        if v == len(units):
            break
        k = v  # the next window starts at unit k: back over whole words, up to overlap
        while k - 1 > u and units[v - 1][1] - units[k - 1][0] <= overlap \
                and units[v][1] - units[k - 1][0] <= size:  # it must still reach unit v
            k -= 1
        u = k
    return out


def chunk_text(tokenizer, text: str, size: int, overlap: int) -> list[tuple[int, int, str]]:
    """(start char, end char, text) of each chunk of ``text``; chunks begin and end at word
    boundaries (the tokenizer's word ids) where they can."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets = enc["offset_mapping"]
    words = enc.word_ids() if enc.encodings else None
    cuts = None
    if words is not None:
        n = len(offsets)
        cuts = [i in (0, n) or words[i] is None or words[i] != words[i - 1]
                for i in range(n + 1)]
    return [(offsets[s][0], offsets[e - 1][1], text[offsets[s][0]:offsets[e - 1][1]])
            for s, e in windows(len(offsets), size, overlap, cuts)]


def is_binary(data: bytes) -> bool:
    return b"\0" in data[:SNIFF_BYTES]


def read_documents(folder: str | Path, *, on_binary: str = "skip") -> list[tuple[str, str]]:
    """(path relative to ``folder``, text) of every file under it (hidden ones aside), sorted.

    Binary files (a NUL byte early on) are skipped with one warning that names them, or
    raise (``on_binary="error"``); text that is not UTF-8 raises a DataError naming file and
    line; a folder with no text at all is a DataError."""
    from lmlab.textfile import decode

    root = Path(folder)
    if not root.exists():
        raise DataError("no such folder", file=str(folder))
    if not root.is_dir():
        raise DataError("is a file; index a folder of documents (data=<folder>)",
                        file=str(folder))
    files = sorted(p for p in root.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise DataError("the folder holds no documents", file=str(folder))
    docs, binary, empty = [], [], 0
    for p in files:
        data = p.read_bytes()
        if is_binary(data):
            if on_binary == "error":
                raise DataError("a binary file (NUL bytes), not text; remove it or pass "
                                "on_binary=skip", file=str(p))
            binary.append(str(p.relative_to(root)))
            continue
        text = decode(data, str(p))
        if text.strip():
            docs.append((str(p.relative_to(root)), text))
        else:
            empty += 1
    if binary:
        shown = ", ".join(binary[:5]) + (f" and {len(binary) - 5} more" if len(binary) > 5
                                          else "")
        warnings.warn(f"skipped {len(binary)} binary file(s) in {folder}: {shown}", UserWarning,
                      stacklevel=2)
    if not docs:
        raise DataError(f"no text documents: {len(binary)} binary and {empty} empty file(s)",
                        file=str(folder))
    return docs


@dataclass
class Index:
    chunks: list[dict]  # {doc, start, end, text}, one per row of embeddings
    embeddings: torch.Tensor  # (N, H) float32, L2-normalised
    meta: dict = field(default_factory=dict)

    def search(self, queries: torch.Tensor, k: int) -> list[list[tuple[int, float]]]:
        """Per query (Q, H): the k best chunks as (row, cosine score), best first."""
        from lmlab.embed.retrieval import top_k

        scores, idx = top_k(queries.float(), self.embeddings, k)
        return [list(zip(i, s)) for i, s in zip(idx.tolist(), scores.tolist())]

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        save_file({"embeddings": self.embeddings.contiguous()},
                  str(folder / "embeddings.safetensors"))
        (folder / "chunks.jsonl").write_text(
            "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in self.chunks),
            encoding="utf-8")
        (folder / "meta.json").write_text(json.dumps(self.meta, indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> Index:
        """The index in ``folder``: an index run folder or its ``index/``."""
        from safetensors.torch import load_file

        folder = Path(folder)
        if (folder / "index").is_dir():
            folder = folder / "index"
        if not (folder / "meta.json").is_file():
            raise DataError("not an index: no meta.json (pass an `lmlab index` run folder)",
                            file=str(folder))
        emb = load_file(str(folder / "embeddings.safetensors"))["embeddings"]
        chunks = [json.loads(x) for x in
                  (folder / "chunks.jsonl").read_text(encoding="utf-8").splitlines() if x]
        if len(chunks) != emb.shape[0]:
            raise DataError(f"{len(chunks)} chunks but {emb.shape[0]} embeddings: the index "
                            "is damaged; build it again", file=str(folder))
        return cls(chunks, emb, json.loads((folder / "meta.json").read_text()))


def build_index(encoder, tokenizer, docs: list[tuple[str, str]], *, size: int, overlap: int,
                batch_size: int = 32, meta: dict | None = None, progress: bool = False
                ) -> Index:
    """Chunk every document, embed every chunk; ``meta`` is stored with the index."""
    from lmlab.embed.model import encode

    chunks = [{"doc": name, "start": s, "end": e, "text": t}
              for name, text in docs for s, e, t in chunk_text(tokenizer, text, size, overlap)]
    texts = [c["text"] for c in chunks]
    parts = []
    step = max(batch_size * 8, 1)
    bar = None
    if progress:
        import sys

        from tqdm.auto import tqdm

        bar = tqdm(total=len(texts), desc="index", unit="chunk", file=sys.stderr)
    for s in range(0, len(texts), step):
        # chunks hold <= size tokens plus [CLS]/[SEP]; a rare re-tokenisation that is longer
        # is cut quietly
        parts.append(encode(encoder, tokenizer, texts[s:s + step], batch_size=batch_size,
                            max_len=size + 2, on_long="quiet"))
        if bar is not None:
            bar.update(len(texts[s:s + step]))
    if bar is not None:
        bar.close()
    emb = torch.cat(parts) if parts else torch.zeros((0, encoder.dim))
    if not encoder.normalize:
        emb = torch.nn.functional.normalize(emb, dim=-1)
    return Index(chunks, emb, dict(meta or {}, chunk_tokens=size, overlap=overlap,
                                   dim=int(emb.shape[1]), chunks=len(chunks), docs=len(docs)))
