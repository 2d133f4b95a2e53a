"""The pretraining paradigms (and position schemes) compared on one corpus and budget.

Each cell trains `lmlab pretrain` with a recipe (default
``configs/pretrain/paradigms-tiny.yaml``) and one objective / position, then probes the frozen
model: a logistic regression on its mean-pooled hidden states tells real held-out lines from
corrupted ones (``lmlab.eval.probe``): words shuffled in raw lines and in plain ones
(lowercase, no punctuation: word order only), letters shuffled inside words (spelling); for
each ``--probe-seeds`` seed (which lines, which corruptions). ``--reuse`` probes finished runs
again without training.
The same architecture untrained (0 steps) is probed too: what the probe reads without any
pretraining, the baseline a trained model must beat (chance is 50%). Generating objectives
(clm, prefix) also sample ``--samples`` texts, scored by the share of real words. One table;
JSON in ``--out`` (with the val-loss curves); ``probe.json`` in each run folder for the report;
each cell trains alone under ``/tmp/lmlab-heavy.lock``.

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


def train_cell(a, objective: str, position: str, out: Path, *extra: str) -> dict:
    from lmlab.config import load_config
    from lmlab.stages import pretrain

    cfg = load_config(pretrain.Config, a.config, [
        f"objective={objective}", f"position={position}", f"output_dir={out}",
        "overwrite=true", "progress=false", *a.set, *extra])
    done = out / "summary.json"
    if a.reuse and done.is_file() and (out / "final").is_dir():
        print(f"[paradigms] reusing {out} (--reuse)", flush=True)
        return {"cfg": cfg, "summary": json.loads(done.read_text())}
    summary = pretrain.run(cfg)
    return {"cfg": cfg, "summary": summary}


def probe_texts(cfg) -> list[str]:
    """All the held-out text (not only the eval_chars the val loss reads): more probe lines."""
    from dataclasses import replace

    from lmlab.stages import pretrain

    return pretrain._read_data(replace(cfg, eval_chars=0))["val"]


TASKS = ("raw", "plain", "spelling")


def probe_cell(cfg, final: Path, n: int, seeds: list[int], tasks=TASKS) -> dict:
    """Probe accuracy per task and seed: word order on raw lines and on plain ones (lowercase,
    no punctuation), spelling (letters shuffled inside words). The seed draws the lines, their
    corruption and the train / test halves; the same seed gives every model the same lines."""
    from transformers import AutoModel, AutoTokenizer

    from lmlab.eval.probe import features, linear_probe, spelling_task, word_order_task

    tok = AutoTokenizer.from_pretrained(final)
    model = AutoModel.from_pretrained(final)
    ctx = getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
    val = probe_texts(cfg)
    out: dict = {}
    for task in tasks:
        accs, lines = [], 0
        for seed in seeds:
            texts, labels = (spelling_task(val, n, seed=seed) if task == "spelling" else
                             word_order_task(val, n, seed=seed, plain=task == "plain"))
            if len(texts) < 20:
                raise SystemExit(f"only {len(texts)} probe lines in the val text")
            x = features(model, tok, texts, max_len=min(ctx, 256))
            half = len(texts) // 2
            accs.append(linear_probe(x[:half], labels[:half], x[half:], labels[half:],
                                     seed=seed))
            lines = len(texts) - half
        out[task] = {"accuracy": accs, "mean": sum(accs) / len(accs), "test_lines": lines}
    return out


def sample_cell(cfg, final: Path, n: int) -> dict:
    """``n`` seeded samples of a generating model and the share of their words that are real
    (seen in the training text); the held-out text's own share is the ceiling."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmlab.eval.pretrain_eval import samples
    from lmlab.eval.sample_quality import known_word_rate, word_vocab
    from lmlab.stages import pretrain

    data = pretrain._read_data(cfg)
    vocab = word_vocab(data["train"])
    tok = AutoTokenizer.from_pretrained(final)
    model = AutoModelForCausalLM.from_pretrained(final)
    ctx = getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
    rows = samples(model, tok, ["\n"] * n, max_new_tokens=cfg.sample_tokens or 100,
                   context=min(ctx, cfg.max_len or ctx), temperature=cfg.sample_temperature,
                   seed=cfg.seed)
    texts = [r["completion"] for r in rows]
    return {"known_word_rate": known_word_rate(texts, vocab),
            "heldout_known_word_rate": known_word_rate(probe_texts(cfg), vocab),
            "samples": texts[:3]}


def curve(run: Path) -> list[list[float]]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x]
    return [[r["step"], r["eval/loss"]] for r in rows if "eval/loss" in r]


def input_tokens_per_step(run: Path) -> int | None:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x]
    return next((r["train/tokens"] for r in rows if "train/tokens" in r), None)


def measure_cell(a, objective: str, position: str) -> dict:
    """Train, probe the trained and the untrained model (same architecture, 0 steps), sample."""
    from bench_pretrain import heavy_lock

    out = Path(a.runs) / f"{objective}-{position}"
    zero = out.with_name(out.name + "-untrained")
    with heavy_lock(a.lock):
        r = train_cell(a, objective, position, out)
        base = train_cell(a, objective, position, zero, "max_steps=0", "sample_tokens=0")
    s, cfg = r["summary"], r["cfg"]
    probe = probe_cell(cfg, out / "final", a.probe_n, a.probe_seeds, a.probe_tasks)
    untrained = probe_cell(base["cfg"], zero / "final", a.probe_n, a.probe_seeds, a.probe_tasks)
    gen = {}
    if objective in ("clm", "prefix") and a.samples:
        gen = sample_cell(cfg, out / "final", a.samples)
        gen["untrained_known_word_rate"] = sample_cell(cfg, zero / "final",
                                                       a.samples)["known_word_rate"]
    result = {"objective": objective, "position": s["position"], "params": s["params"],
              "steps": s["steps"], "input_tokens_per_step": input_tokens_per_step(out),
              "train_s": s["train_seconds"], "val_loss": s["val"]["loss"],
              "untrained_val_loss": base["summary"]["val"]["loss"],
              "bits_per_byte": s["val"].get("bits_per_byte"),
              "probe_accuracy": probe.get("plain", next(iter(probe.values())))["mean"],
              "probe": probe,
              "untrained_probe": untrained, "chance": 0.5, **gen, "curve": curve(out),
              "run": str(out)}
    # the report reads this beside summary.json (nothing recomputed there)
    (out / "probe.json").write_text(json.dumps(
        {k: result[k] for k in ("probe", "untrained_probe", "chance", "input_tokens_per_step")}
        | {k: gen[k] for k in ("known_word_rate", "heldout_known_word_rate",
                               "untrained_known_word_rate") if k in gen},
        indent=2) + "\n")
    return result


def pct(xs: list[float]) -> str:
    if not xs:
        return "-"
    m = sum(xs) / len(xs)
    return f"{m:.1%}" if len(xs) == 1 else f"{m:.1%} ({min(xs):.0%}-{max(xs):.0%})"


def print_table(cells: list[dict]) -> None:
    print("| objective | position | params | steps | tokens/step | val loss | bits/byte | "
          "probe plain | untrained plain | probe raw | untrained raw | probe spelling | "
          "untrained spelling | real words |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for c in cells:
        bpb = f"{c['bits_per_byte']:.3f}" if c["bits_per_byte"] else "-"
        words = f"{c['known_word_rate']:.1%}" if c.get("known_word_rate") is not None else "-"
        p, u = c["probe"], c["untrained_probe"]
        p = {t: p.get(t, {"accuracy": []}) for t in TASKS}
        u = {t: u.get(t, {"accuracy": []}) for t in TASKS}
        print(f"| {c['objective']} | {c['position']} | {c['params'] / 1e6:.2f}M | {c['steps']} "
              f"| {c['input_tokens_per_step']} | {c['val_loss']:.3f} | {bpb} | "
              f"{pct(p['plain']['accuracy'])} | {pct(u['plain']['accuracy'])} | "
              f"{pct(p['raw']['accuracy'])} | {pct(u['raw']['accuracy'])} | "
              f"{pct(p['spelling']['accuracy'])} | {pct(u['spelling']['accuracy'])} | {words} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs/pretrain/paradigms-tiny.yaml"))
    p.add_argument("--objectives", nargs="+", default=["clm", "mlm", "span", "prefix",
                                                        "electra"])
    p.add_argument("--positions", nargs="+", default=["auto"])
    p.add_argument("--set", nargs="*", default=[], help="key=value overrides for every cell")
    p.add_argument("--probe-n", type=int, default=1000, help="probe lines at most (half train)")
    p.add_argument("--probe-seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--probe-tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--samples", type=int, default=16, help="samples per generating model")
    p.add_argument("--reuse", action="store_true",
                   help="probe the finished runs already in --runs again, no retraining "
                        "(same settings: the caller's responsibility)")
    p.add_argument("--runs", default="runs/paradigms")
    p.add_argument("--lock", default="/tmp/lmlab-heavy.lock")
    p.add_argument("--out", default="benchmarks/results/pretrain_paradigms.json")
    a = p.parse_args()
    cells = []
    for objective in a.objectives:
        for position in a.positions:
            if objective in ("mlm", "electra") and position not in ("auto", "learned"):
                continue  # encoders have learned positions only
            if objective == "prefix" and position == "alibi":
                continue  # Falcon's ALiBi takes no prefix mask
            cells.append(measure_cell(a, objective, position))
            brief = {k: v for k, v in cells[-1].items()
                     if k not in ("probe", "untrained_probe", "samples", "curve")}
            print(f"[paradigms] {json.dumps(brief)}", flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"args": vars(a), "cells": cells}, indent=2) + "\n")
    print_table(cells)


if __name__ == "__main__":
    main()
