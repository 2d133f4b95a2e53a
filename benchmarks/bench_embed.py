"""Embeddings: `lmlab embed` training vs sentence-transformers' SentenceTransformerTrainer, and
`/v1/embeddings` of `lmlab serve` vs `SentenceTransformer.encode`, side by side in one run.

Training: the same encoder (all-MiniLM-L6-v2 by default), the same ChatterBot training pairs,
the same loss (in-batch negatives InfoNCE = MultipleNegativesRankingLoss, scale 20), batch,
max length, constant lr, fp32 on CPU, dropout on; pairs/s over the steps after ``--warmup``.
``lmlab (group_by_length)`` is our side with length-grouped batches (less padding; the in-batch
negatives then share a length range), shown beside, not instead.

Embedding: the same texts (the collection's documents) in requests of ``--encode-batch``:
our server through the real `openai` client (base64, as the client asks by default), and
``SentenceTransformer.encode`` called on the same batches; plus ``encode`` on the whole list
at once (it sorts every text by length first). Texts/s.

Takes the shared heavy-work lock (/tmp/lmlab-heavy.lock) so nothing else runs beside it.

    .venv/bin/python benchmarks/bench_embed.py --steps 20 --warmup 3 --batch 32
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
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


def bench_lmlab(args, data_file: Path, out: Path, group: bool) -> dict:
    from lmlab.config import load_config
    from lmlab.stages import embed

    cfg = load_config(embed.Config, None, [
        f"model={args.folder}", f"data={data_file}", f"output_dir={out}", "device=cpu",
        f"max_steps={args.steps}", f"batch_size={args.batch}", f"max_len={args.max_len}",
        f"scale={args.scale}", "lr=2e-5", "schedule=constant", "warmup_steps=0",
        "eval_collection=none", "progress=false", "save_every=0", "overwrite=true",
        f"group_by_length={str(group).lower()}"])
    embed.run(cfg)
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    timed = metrics[args.warmup:]
    step_s = sum(m["train/step_s"] for m in timed) / len(timed)
    return {"pairs_per_s": args.batch / step_s, "step_s": step_s,
            "tokens_per_s": sum(m["train/tokens"] for m in timed) / (step_s * len(timed)),
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
        save_strategy="no", report_to="none", use_cpu=True, dataloader_num_workers=0, seed=0,
        bf16=False, fp16=False)
    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t0)

    trainer = SentenceTransformerTrainer(model=model, args=config,
                                         train_dataset=Dataset.from_list(rows), loss=loss,
                                         callbacks=[Timer()])
    trainer.train()
    timed = times[args.warmup:]
    step_s = sum(timed) / len(timed)
    return {"pairs_per_s": args.batch / step_s, "step_s": step_s,
            "optimizer": str(config.optim)}


def bench_encode(args, texts: list[str]) -> dict:
    import openai
    from sentence_transformers import SentenceTransformer

    from lmlab.serve.bench import live_server
    from lmlab.stages.serve import Config, build

    batches = [texts[i:i + args.encode_batch] for i in range(0, len(texts), args.encode_batch)]
    st = SentenceTransformer(args.folder, device="cpu")
    st.encode(batches[0], batch_size=args.encode_batch)  # warm up
    t0 = time.perf_counter()
    for b in batches:
        st.encode(b, batch_size=args.encode_batch)
    st_batches = len(texts) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    st.encode(texts, batch_size=args.encode_batch)
    st_all = len(texts) / (time.perf_counter() - t0)

    app, _ = build(Config(model="tiny:llama", embed_model=args.folder,
                          served_model_name="llm", log_level="error",
                          threads=torch.get_num_threads()))
    app.state.embedder.threads = torch.get_num_threads()
    with live_server(app) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0,
                               timeout=600)
        client.embeddings.create(model=args.folder, input=batches[0])  # warm up
        t0 = time.perf_counter()
        for b in batches:
            client.embeddings.create(model=args.folder, input=b)
        ours = len(texts) / (time.perf_counter() - t0)
    return {"texts": len(texts), "batch": args.encode_batch, "lmlab_serve_texts_per_s": ours,
            "st_encode_same_batches_texts_per_s": st_batches,
            "st_encode_all_at_once_texts_per_s": st_all, "speedup_vs_same_batches":
                ours / st_batches, "speedup_vs_all_at_once": ours / st_all}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="minilm", help="encoder reference (both sides)")
    p.add_argument("--collection", default="chatterbot", choices=["chatterbot", "gsm8k"])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--scale", type=float, default=20.0)
    p.add_argument("--rows", type=int, default=100_000, help="training pairs at most")
    p.add_argument("--texts", type=int, default=512, help="texts embedded at most")
    p.add_argument("--encode-batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--parts", nargs="+", default=["train", "encode"],
                   choices=["train", "encode"])
    p.add_argument("--out", default="benchmarks/results/embed.json")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results: dict = {}
    with heavy_lock(), tempfile.TemporaryDirectory() as tmp:
        args.folder = folder_of(args.model, tmp)
        if "train" in args.parts:
            rows = pairs(args)
            data_file = Path(tmp) / "pairs.jsonl"
            data_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
            ours = bench_lmlab(args, data_file, Path(tmp) / "lmlab", group=False)
            grouped = bench_lmlab(args, data_file, Path(tmp) / "lmlab-grouped", group=True)
            theirs = bench_st_trainer(args, rows, Path(tmp) / "st")
            results["train"] = {"lmlab": ours, "lmlab_group_by_length": grouped,
                                "sentence_transformers": theirs,
                                "speedup": ours["pairs_per_s"] / theirs["pairs_per_s"],
                                "speedup_grouped": grouped["pairs_per_s"] /
                                theirs["pairs_per_s"]}
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
    if "train" in results:
        r = results["train"]
        print("| training | pairs/s | s/step | vs ST |\n|---|---|---|---|")
        for name, key in (("lmlab embed", "lmlab"), ("lmlab embed group_by_length",
                                                     "lmlab_group_by_length"),
                          ("SentenceTransformerTrainer", "sentence_transformers")):
            print(f"| {name} | {r[key]['pairs_per_s']:.1f} | {r[key]['step_s']:.3f} | "
                  f"{r[key]['pairs_per_s'] / r['sentence_transformers']['pairs_per_s']:.2f}x |")
    if "encode" in results:
        e = results["encode"]
        print(f"| embedding ({e['texts']} texts, batch {e['batch']}) | texts/s |\n|---|---|")
        print(f"| lmlab serve /v1/embeddings (openai client) | "
              f"{e['lmlab_serve_texts_per_s']:.1f} |")
        print(f"| SentenceTransformer.encode, same batches | "
              f"{e['st_encode_same_batches_texts_per_s']:.1f} |")
        print(f"| SentenceTransformer.encode, all at once | "
              f"{e['st_encode_all_at_once_texts_per_s']:.1f} |")


if __name__ == "__main__":
    main()
