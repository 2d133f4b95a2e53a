"""`lmlab select`: keep a fraction of the training rows, chosen on sentence embeddings.

Rows (a corpus cut into chunks, text files, or row files of any kind: pretraining text, SFT
chats, tasks) are embedded with an encoder (the offline MiniLM by default), then a coreset of
``fraction`` of them is chosen by k-center greedy, facility location (CRAIG) or at random
(``lmlab.data.text_select`` over ``lmlab.data.coresets``). The chosen rows, in their original
order and unchanged, go to ``selected.jsonl``, which `lmlab pretrain data=...` and
`lmlab sft data=...` read like any row file.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmlab.config import RunConfig, opt

HELP = "keep a fraction of the training rows: k-center / facility location coreset or random"


@dataclass
class Config(RunConfig):
    UNUSED = ("max_steps", "resume")  # no optimizer steps: selection runs in one go
    output_dir: str = opt("", "run folder (default: runs/select-<method>-<fraction>)")
    model: str = opt("minilm", "encoder that embeds the rows: minilm, tiny:bert, an encoder "
                               "folder or an `lmlab embed` run")
    data: str = opt("corpus:shakespeare", "rows: corpus:<name> or text files (cut into "
                                          "chunk_chars chunks), or a row file / task:<name> "
                                          "(rows of `kind`)")
    kind: str = opt("text", "row kind of a row file (text, chat, task, preference, kto)",
                    choices=("text", "chat", "task", "preference", "kto"))
    chunk_chars: int = opt(1000, "corpus / text files: characters per row (cut at line ends)",
                           min=50)
    limit: int = opt(0, "use at most this many rows, evenly spaced over the source (0 = all)",
                     min=0)
    method: str = opt("kcenter", "kcenter (farthest-first cover), facility (CRAIG facility "
                                 "location), random", choices=("kcenter", "facility", "random"))
    fraction: float = opt(0.5, "fraction of the rows kept", min=0.0, max=1.0,
                          min_exclusive=True)
    embeddings: str = opt("", "reuse the embeddings.pt of an earlier select run on the same "
                              "rows (a file or that run folder)")
    max_tokens: int = opt(128, "encoder tokens per row (longer rows are embedded by their "
                               "start)", min=8)
    batch_size: int = opt(32, "rows per encoder forward pass", min=1)
    device: str = opt("auto", "cpu | cuda | mps | auto")
    progress: bool = opt(True, "show a progress bar")

    def validate(self) -> list[str]:
        if self.data:
            return []
        need = "data: the rows to select from (corpus:shakespeare, a text file or a row file)"
        return [need]


def run(cfg: Config) -> dict:
    import time

    from lmlab.common import print0
    from lmlab.data.text_select import cover, row_text, select_rows
    from lmlab.runs import prepare_run

    rows = read_rows(cfg)  # before the run folder is touched
    if not cfg.output_dir:
        cfg.output_dir = f"runs/select-{cfg.method}-{cfg.fraction:g}"
    emb, embed_s = _embeddings(cfg, [row_text(r) for r in rows])
    run_ = prepare_run(cfg, "select")
    t0 = time.perf_counter()
    idx, weights = select_rows(cfg.method, emb, cfg.fraction, seed=cfg.seed)
    select_s = time.perf_counter() - t0
    run_.write_jsonl("selected.jsonl", [rows[i] for i in idx.tolist()])
    _save_embeddings(run_.path / "embeddings.pt", emb, cfg)
    run_.write_json("selection.json", {"indices": idx.tolist(), "weights": weights.tolist()})
    chars = sum(len(row_text(rows[i])) for i in idx.tolist())
    summary = {"stage": "select", "method": cfg.method, "fraction": cfg.fraction,
               "seed": cfg.seed, "rows": len(rows), "kept": len(idx), "kept_chars": chars,
               "encoder": cfg.model, "dim": emb.shape[1], "embed_seconds": round(embed_s, 1),
               "select_seconds": round(select_s, 2), "cover": cover(emb, idx)}
    run_.write_json("summary.json", summary)
    c = summary["cover"]
    print0(f"[lmlab] select: {cfg.method} kept {len(idx):,} of {len(rows):,} rows "
           f"({chars:,} characters) in {select_s:.1f} s; cover radius {c['radius']:.3f}, "
           f"mean distance {c['mean_distance']:.3f}")
    print0(f"[lmlab] wrote {run_.path}/ (selected.jsonl, selection.json, embeddings.pt, "
           f"summary.json)")
    return summary


def read_rows(cfg: Config) -> list[dict]:
    """The rows: ``{"text": chunk}`` for a corpus or text files, else the row file's rows
    (validated as ``kind``); ``limit`` keeps evenly spaced ones. Empty is a DataError."""
    from pathlib import Path

    from lmlab.data.documents import ROW_FILES
    from lmlab.errors import DataError

    src = cfg.data
    is_rows = src.startswith("task:") or Path(src).suffix.lower() in ROW_FILES
    if is_rows:
        from lmlab.data.sources import load_rows

        rows = load_rows(src, cfg.kind)
    else:
        from lmlab.data.corpora import line_chunks
        from lmlab.data.documents import load_documents

        rows = [{"text": c} for d in load_documents(src) for c in line_chunks(d, cfg.chunk_chars)]
    if not rows:
        raise DataError("no rows to select from", file=src)
    if cfg.limit and cfg.limit < len(rows):
        step = len(rows) / cfg.limit
        rows = [rows[int(i * step)] for i in range(cfg.limit)]
    return rows


def _embeddings(cfg: Config, texts: list[str]):
    """(N, D) float32 embeddings and the seconds they took (0 when reused)."""
    import time

    import torch

    from lmlab.errors import ConfigError

    if cfg.embeddings:
        from pathlib import Path

        p = Path(cfg.embeddings)
        p = p / "embeddings.pt" if p.is_dir() else p
        if not p.is_file():
            raise ConfigError(f"embeddings: no file {p} (an earlier `lmlab select` run)")
        saved = torch.load(p, map_location="cpu", weights_only=True)
        if saved["features"].shape[0] != len(texts) or saved["model"] != cfg.model:
            raise ConfigError(f"embeddings: {p} holds {saved['features'].shape[0]} rows by "
                              f"{saved['model']}, these are {len(texts)} rows by {cfg.model}")
        return saved["features"], 0.0
    from lmlab.common import pick_device
    from lmlab.embed.model import encode, load_encoder

    encoder, tok = load_encoder(cfg.model, device=pick_device(cfg.device))
    t0 = time.perf_counter()
    step, parts = cfg.batch_size * 8, []
    with torch.no_grad(), _bar(cfg, len(texts)) as bar:
        for s in range(0, len(texts), step):  # rows longer than max_tokens: their start
            parts.append(encode(encoder, tok, texts[s:s + step], batch_size=cfg.batch_size,
                                max_len=cfg.max_tokens, on_long="quiet"))
            bar.update(len(parts[-1]))
    return torch.cat(parts).float(), time.perf_counter() - t0


def _bar(cfg: Config, total: int):
    import sys

    from tqdm.auto import tqdm

    return tqdm(total=total, desc="embed", unit="row", file=sys.stderr,
                disable=not cfg.progress)


def _save_embeddings(path, emb, cfg: Config) -> None:
    import torch

    torch.save({"features": emb, "model": cfg.model, "data": cfg.data}, path)
