"""The pretraining paradigms (and position schemes) compared on one corpus and budget.

Each cell trains `lmlab pretrain` with a recipe (default
``configs/pretrain/paradigms-tiny.yaml``) and one objective / position, then probes the frozen model: a logistic regression on its
mean-pooled hidden states tells real held-out lines from word-shuffled ones
(``lmlab.eval.probe``). One table: objective, position, parameters, train time, val loss,
bits per byte (causal objectives), probe accuracy; JSON in ``--out``; each cell runs alone
under ``/tmp/lmlab-heavy.lock``.

    .venv/bin/python benchmarks/pretrain_paradigms.py
    .venv/bin/python benchmarks/pretrain_paradigms.py --objectives clm \
        --positions rope learned none alibi
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def train_cell(a, objective: str, position: str, out: Path) -> dict:
    from lmlab.config import load_config
    from lmlab.stages import pretrain

    cfg = load_config(pretrain.Config, a.config, [
        f"objective={objective}", f"position={position}", f"output_dir={out}",
        "overwrite=true", "progress=false", *a.set])
    summary = pretrain.run(cfg)
    return {"cfg": cfg, "summary": summary}


def probe_cell(cfg, final: Path, n: int) -> float:
    from transformers import AutoModel, AutoTokenizer

    from lmlab.eval.probe import features, linear_probe, word_order_task
    from lmlab.stages import pretrain

    texts, labels = word_order_task(pretrain._read_data(cfg)["val"], n, seed=cfg.seed)
    if len(texts) < 20:
        raise SystemExit(f"only {len(texts)} probe lines in the val text: raise eval_chars")
    tok = AutoTokenizer.from_pretrained(final)
    model = AutoModel.from_pretrained(final)
    ctx = getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
    x = features(model, tok, texts, max_len=min(ctx, 256))
    half = len(texts) // 2
    return linear_probe(x[:half], labels[:half], x[half:], labels[half:], seed=cfg.seed)


def main() -> None:
    from bench_pretrain import heavy_lock

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs/pretrain/paradigms-tiny.yaml"))
    p.add_argument("--objectives", nargs="+", default=["clm", "mlm", "span", "prefix",
                                                        "electra"])
    p.add_argument("--positions", nargs="+", default=["auto"])
    p.add_argument("--set", nargs="*", default=[], help="key=value overrides for every cell")
    p.add_argument("--probe-n", type=int, default=400)
    p.add_argument("--runs", default="runs/paradigms")
    p.add_argument("--lock", default="/tmp/lmlab-heavy.lock")
    p.add_argument("--out", default="benchmarks/results/pretrain_paradigms.json")
    a = p.parse_args()
    cells = []
    for objective in a.objectives:
        for position in a.positions:
            if objective in ("mlm", "electra") and position not in ("auto", "learned"):
                continue
            out = Path(a.runs) / f"{objective}-{position}"
            with heavy_lock(a.lock):
                r = train_cell(a, objective, position, out)
            s = r["summary"]
            acc = probe_cell(r["cfg"], out / "final", a.probe_n)
            cells.append({"objective": objective, "position": s["position"],
                          "params": s["params"], "steps": s["steps"],
                          "train_s": s["train_seconds"], "val_loss": s["val"]["loss"],
                          "bits_per_byte": s["val"].get("bits_per_byte"),
                          "probe_accuracy": acc, "run": str(out)})
            print(f"[paradigms] {cells[-1]}", flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"args": vars(a), "cells": cells}, indent=2) + "\n")
    print("| objective | position | params | steps | train s | val loss | bits/byte | probe |")
    print("|---|---|---|---|---|---|---|---|")
    for c in cells:
        bpb = f"{c['bits_per_byte']:.3f}" if c["bits_per_byte"] else "-"
        print(f"| {c['objective']} | {c['position']} | {c['params'] / 1e6:.2f}M | {c['steps']} "
              f"| {c['train_s']:.0f} | {c['val_loss']:.3f} | {bpb} | "
              f"{c['probe_accuracy']:.1%} |")


if __name__ == "__main__":
    main()
