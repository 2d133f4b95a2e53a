"""Embeddings: `lmlab embed` training vs sentence-transformers' SentenceTransformerTrainer, and
`/v1/embeddings` of `lmlab serve` vs `SentenceTransformer.encode`, side by side in one run.

Training: the same encoder (all-MiniLM-L6-v2 by default), the same ChatterBot training pairs,
the same loss (in-batch negatives InfoNCE = MultipleNegativesRankingLoss, scale 20), batch,
max length, constant lr, fp32 on CPU (dtype=fp32 on ours: no bf16 autocast), dropout on,
gradient clipping at 1.0 on both. Pairs/s = batch / the wall-clock time from one step's end to
the next (data, logging and all), over the steps after ``--warmup``. The sides alternate in
``--rounds`` rounds (ours first in even rounds, theirs first in odd ones); each side's figure
is its median round, the speedup the median of the per-round ratios. Extra sides
(``--extra``): ``lmlab_padded`` (ours with unpad=false: transformers' padded forward, to show
what unpadding gives) and ``lmlab_grouped`` (group_by_length=true: other batches, less
padding; not a like-for-like comparison).

Embedding: the same texts (the collection's documents) in requests of ``--encode-batch``:
our server through the real `openai` client (base64, as the client asks by default), and
``SentenceTransformer.encode`` called on the same batches, alternating per round; plus
``encode`` on the whole list at once (it sorts every text by length first) for reference.
Texts/s. Note ST truncates at its folder's max_seq_length (256 for MiniLM) while our server
embeds every input whole up to the encoder's context (512), so a longer text costs us more.

Takes the shared heavy-work lock (/tmp/lmlab-heavy.lock) so nothing else runs beside it.

    .venv/bin/python benchmarks/bench_embed.py --steps 20 --warmup 3 --batch 32 --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

LOCK = "/tmp/lmlab-heavy.lock"


@contextlib.contextmanager
def heavy_lock():
    with open(LOCK, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[bench] waiting for {LOCK} (another heavy run holds it)", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def folder_of(model: str, tmp: str) -> str:
    """The encoder's folder, which both sides load (tiny:bert is saved to one first)."""
    from lmlab.embed.model import load_encoder, resolve_encoder, save_encoder

    r = resolve_encoder(model)
    if r.kind != "tiny":
        return r.path
    enc, tok = load_encoder(model)
    save_encoder(enc, tok, Path(tmp) / "tiny-encoder", max_len=128)
    return str(Path(tmp) / "tiny-encoder")


def pairs(args) -> list[dict]:
    from lmlab.embed.collections import load_collection

    return load_collection(args.collection).train_pairs[:args.rows]


class _Stamps:
    """A metric logger that only notes when each step's row arrives (after the step)."""

    def __init__(self):
        self.t: list[float] = []

    def log(self, row, step):
        self.t.append(time.perf_counter())

    def close(self):
        pass


def per_step(stamps: list[float], warmup: int) -> float:
    """Mean wall seconds per step from the end of step ``warmup`` to the end of the last."""
    t = stamps[warmup - 1:] if warmup else stamps
    return (t[-1] - t[0]) / (len(t) - 1)


def bench_lmlab(args, data_file: Path, out: Path, *, group: bool = False,
                unpad: bool = True) -> dict:
    import lmlab.train.logging as logging_mod
    from lmlab.config import load_config
    from lmlab.stages import embed

    cfg = load_config(embed.Config, None, [
        f"model={args.folder}", f"data={data_file}", f"output_dir={out}", "device=cpu",
        "dtype=fp32", f"max_steps={args.steps}", f"batch_size={args.batch}",
        f"max_len={args.max_len}", f"scale={args.scale}", "lr=2e-5", "schedule=constant",
        "warmup_steps=0", "clip_grad=1.0", "eval_collection=none", "progress=false",
        "save_every=0", "overwrite=true", f"group_by_length={str(group).lower()}",
        f"unpad={str(unpad).lower()}"])
    stamps, build = _Stamps(), logging_mod.build_loggers
    logging_mod.build_loggers = lambda *a, **k: build(*a, **k) + [stamps]
    try:
        embed.run(cfg)
    finally:
        logging_mod.build_loggers = build
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    step_s = per_step(stamps.t, args.warmup)
    inner = [m["train/step_s"] for m in metrics[args.warmup:]]
    return {"pairs_per_s": args.batch / step_s, "step_s": step_s,
            "loop_step_s": sum(inner) / len(inner),
            "tokens_per_step": sum(m["train/tokens"] for m in metrics) / len(metrics),
            "final_loss": metrics[-1]["train/loss"]}


def bench_st_trainer(args, rows: list[dict], out: Path) -> dict:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.trainer import (
        SentenceTransformerTrainer,
    )
    from sentence_transformers.sentence_transformer.training_args import (
        SentenceTransformerTrainingArguments,
    )
    from transformers import TrainerCallback

    model = SentenceTransformer(args.folder, device="cpu")
    model.max_seq_length = args.max_len
    loss = losses.MultipleNegativesRankingLoss(model, scale=args.scale)
    config = SentenceTransformerTrainingArguments(
        output_dir=str(out), per_device_train_batch_size=args.batch, max_steps=args.steps,
        learning_rate=2e-5, lr_scheduler_type="constant", warmup_steps=0, logging_steps=1,
        max_grad_norm=1.0, save_strategy="no", report_to="none", use_cpu=True,
        dataloader_num_workers=0, seed=0, bf16=False, fp16=False)
    stamps: list[float] = []

    class Timer(TrainerCallback):
        def on_step_end(self, *a, **k):
            stamps.append(time.perf_counter())

    trainer = SentenceTransformerTrainer(model=model, args=config,
                                         train_dataset=Dataset.from_list(rows), loss=loss,
                                         callbacks=[Timer()])
    trainer.train()
    step_s = per_step(stamps, args.warmup)
    return {"pairs_per_s": args.batch / step_s, "step_s": step_s,
            "optimizer": str(config.optim)}


def summarise(rounds: list[dict], sides: list[str], ref: str, key: str = "pairs_per_s"
              ) -> dict:
    """Each side's median round, and the median over rounds of its ratio to ``ref``."""
    out = {}
    for side in sides:
        out[side] = {key: statistics.median(r[side][key] for r in rounds),
                     "rounds": [r[side] for r in rounds]}
        if side != ref:
            out[side]["speedup"] = statistics.median(r[side][key] / r[ref][key] for r in rounds)
    return out


def bench_train(args, tmp: str) -> dict:
    rows = pairs(args)
    data_file = Path(tmp) / "pairs.jsonl"
    data_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runs = {"lmlab": lambda: bench_lmlab(args, data_file, Path(tmp) / "lmlab"),
            "lmlab_padded": lambda: bench_lmlab(args, data_file, Path(tmp) / "pad", unpad=False),
            "lmlab_grouped": lambda: bench_lmlab(args, data_file, Path(tmp) / "grp", group=True),
            "sentence_transformers": lambda: bench_st_trainer(args, rows, Path(tmp) / "st")}
    sides = ["lmlab", *args.extra, "sentence_transformers"]
    rounds = []
    for r in range(args.rounds):
        got = {}
        for side in (sides if r % 2 == 0 else sides[::-1]):
            print(f"[bench] round {r + 1}/{args.rounds}: {side}", flush=True)
            got[side] = runs[side]()
        rounds.append(got)
    return summarise(rounds, sides, "sentence_transformers")


def _timed(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def bench_encode(args, texts: list[str]) -> dict:
    import numpy as np
    import openai
    from sentence_transformers import SentenceTransformer

    from lmlab.serve.bench import live_server
    from lmlab.stages.serve import Config, build

    batches = [texts[i:i + args.encode_batch] for i in range(0, len(texts), args.encode_batch)]
    st = SentenceTransformer(args.folder, device="cpu")
    app, _ = build(Config(model="tiny:llama", embed_model=args.folder,
                          served_model_name="llm", log_level="error",
                          threads=torch.get_num_threads()))
    embedder = app.state.embedder
    embedder.threads = torch.get_num_threads()
    sides = ["lmlab", *(["lmlab_padded"] if "lmlab_padded" in args.extra else []),
             "st_same_batches"]
    rounds: list[dict] = []
    with live_server(app) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0,
                               timeout=600)

        def serve(unpad: bool):
            embedder.encoder.unpad = unpad
            return [np.asarray(d.embedding) for b in batches
                    for d in client.embeddings.create(model=args.folder, input=b).data]

        runs = {"lmlab": lambda: serve(True), "lmlab_padded": lambda: serve(False),
                "st_same_batches": lambda: [st.encode(b, batch_size=args.encode_batch)
                                            for b in batches]}
        client.embeddings.create(model=args.folder, input=batches[0])
        st.encode(batches[0], batch_size=args.encode_batch)
        for r in range(args.rounds):
            got = {}
            for side in (sides if r % 2 == 0 else sides[::-1]):
                got[side] = {"texts_per_s": _timed(runs[side], len(texts))}
            got["st_all_at_once"] = {"texts_per_s": _timed(
                lambda: st.encode(texts, batch_size=args.encode_batch), len(texts))}
            rounds.append(got)
        ours = np.stack(serve(True))
    theirs = st.encode(texts, batch_size=args.encode_batch)
    whole = [len(x) <= st.max_seq_length for x in embedder.tokenize(texts)]  # ST cuts the rest
    return {"texts": len(texts), "batch": args.encode_batch,
            "texts_st_truncates": len(texts) - sum(whole),
            "max_abs_diff_vs_st": float(np.abs(ours[whole] - theirs[whole]).max()),
            **summarise(rounds, [*sides, "st_all_at_once"], "st_same_batches", "texts_per_s")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="minilm", help="encoder reference (both sides)")
    p.add_argument("--collection", default="chatterbot", choices=["chatterbot", "gsm8k"])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3, help="steps not timed (>= 1)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per comparison")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--scale", type=float, default=20.0)
    p.add_argument("--rows", type=int, default=100_000, help="training pairs at most")
    p.add_argument("--texts", type=int, default=512, help="texts embedded at most")
    p.add_argument("--encode-batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--extra", nargs="*", default=[], choices=["lmlab_padded", "lmlab_grouped"],
                   help="extra rows for ours (see the docstring)")
    p.add_argument("--parts", nargs="+", default=["train", "encode"],
                   choices=["train", "encode"])
    p.add_argument("--out", default="benchmarks/results/embed.json")
    args = p.parse_args()
    if args.warmup < 1 or args.steps < args.warmup + 2:
        p.error("need --warmup >= 1 and --steps >= warmup + 2 (two timed step ends)")
    if args.threads:
        torch.set_num_threads(args.threads)
    results: dict = {}
    with heavy_lock(), tempfile.TemporaryDirectory() as tmp:
        args.folder = folder_of(args.model, tmp)
        if "train" in args.parts:
            results["train"] = bench_train(args, tmp)
        if "encode" in args.parts:
            from lmlab.embed.collections import load_collection

            texts = list(load_collection(args.collection).docs.values())[:args.texts]
            results["encode"] = bench_encode(args, texts)
    env = {"python": sys.version.split()[0], "torch": torch.__version__,
           "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
           "capability": torch.backends.cpu.get_cpu_capability(), "cores": os.cpu_count()}
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "args": vars(args), "env": env,
              "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print_tables(results, args)


def print_tables(results: dict, args) -> None:
    names = {"lmlab": "lmlab embed", "lmlab_padded": "lmlab embed unpad=false",
             "lmlab_grouped": "lmlab embed group_by_length=true",
             "sentence_transformers": "SentenceTransformerTrainer"}
    if "train" in results:
        print(f"| training (batch {args.batch}, median of {args.rounds} rounds) | pairs/s | "
              "s/step | vs ST |\n|---|---|---|---|")
        for key, r in results["train"].items():
            step = statistics.median(x["step_s"] for x in r["rounds"])
            print(f"| {names[key]} | {r['pairs_per_s']:.1f} | {step:.3f} | "
                  f"{r.get('speedup', 1.0):.2f}x |")
    if "encode" in results:
        e = results["encode"]
        print(f"| embedding ({e['texts']} texts, batch {e['batch']}) | texts/s | vs ST same "
              "batches |\n|---|---|---|")
        for key, name in (("lmlab", "lmlab serve /v1/embeddings (openai client, base64)"),
                          ("lmlab_padded", "lmlab serve, unpad off"),
                          ("st_same_batches", "SentenceTransformer.encode, same batches"),
                          ("st_all_at_once", "SentenceTransformer.encode, all at once")):
            if key in e:
                print(f"| {name} | {e[key]['texts_per_s']:.1f} | "
                      f"{e[key].get('speedup', 1.0):.2f}x |")
        print(f"max |ours - ST| over the embeddings of the texts ST does not truncate: "
              f"{e['max_abs_diff_vs_st']:.2e} ({e['texts_st_truncates']} truncated by ST)")


if __name__ == "__main__":
    main()
