"""Text coresets: pretraining on a fraction of the rows chosen by k-center greedy or facility
location on MiniLM embeddings, against random subsets and the full set, at equal steps.

A pool of ``--rows`` rows (``--chunk-chars`` characters each, evenly spaced over the corpus's
training part) is embedded once (`lmlab select`, embeddings.pt reused by every later
selection); each (method, fraction, seed) selects with `lmlab select`, then `lmlab pretrain`
trains the same model for the same steps on the kept rows and is scored on the same held-out
text (the corpus's held-out part). Random subsets run once per seed; k-center (deterministic)
and facility location (its stochastic greedy varies little with the seed) once. JSON in
``--out``; the runs under ``--runs`` (each pretrain run gets a coreset.json that the report
reads); all under ``/tmp/lmlab-heavy.lock``.

    .venv/bin/python benchmarks/bench_text_coresets.py
    .venv/bin/python benchmarks/bench_text_coresets.py --fractions 0.5 --seeds 0 \\
        --set max_steps=50
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

PRETRAIN = ["preset=nano", "context=64", "batch_size=12", "max_steps=200", "lr=2e-3",
            "warmup_steps=20", "eval_every=0", "save_every=0", "sample_tokens=0",
            "eval_chars=40000", "progress=false", "overwrite=true"]


def select(a, method: str, fraction: float, seed: int, out: Path, embeddings: str) -> dict:
    from lmlab.config import load_config
    from lmlab.stages import select as S

    cfg = load_config(S.Config, None, [
        f"data={a.data}", f"chunk_chars={a.chunk_chars}", f"limit={a.rows}",
        f"method={method}", f"fraction={fraction}", f"seed={seed}", f"model={a.encoder}",
        f"embeddings={embeddings}", f"output_dir={out}", "overwrite=true", "progress=false"])
    return S.run(cfg)


def pretrain(a, data: Path, val: Path, out: Path, seed: int) -> dict:
    from lmlab.config import load_config
    from lmlab.stages import pretrain as P

    cfg = load_config(P.Config, None, [*PRETRAIN, f"data={data}", f"val_data={val}",
                                       f"seed={seed}", f"output_dir={out}", *a.set])
    return P.run(cfg)


def heldout(a, runs: Path) -> Path:
    from lmlab.data.corpora import corpus_texts, limit_chars

    path = runs / "val.txt"
    path.write_text("\n".join(limit_chars(corpus_texts(a.data, "heldout"), a.val_chars)))
    return path


def cells(a) -> list[tuple[str, float, int]]:
    out = [("full", 1.0, 0)]
    for f in a.fractions:
        for m in a.methods:
            for s in (a.seeds if m == "random" else a.seeds[:1]):
                out.append((m, f, s))
    return out


def run_cell(a, runs: Path, val: Path, method: str, fraction: float, seed: int,
             embeddings: str) -> dict:
    name = f"{method}-{fraction:g}-s{seed}"
    sel = select(a, "random" if method == "full" else method, fraction, seed,
                 runs / f"select-{name}", embeddings)
    out = runs / f"pretrain-{name}"
    # the same training seed for every cell: only the data differs
    s = pretrain(a, runs / f"select-{name}" / "selected.jsonl", val, out, a.train_seed)
    info = {"method": method, "fraction": fraction, "seed": seed, "rows": sel["rows"],
            "kept": sel["kept"], "kept_chars": sel["kept_chars"], "cover": sel["cover"],
            "select": str(runs / f"select-{name}")}
    (out / "coreset.json").write_text(json.dumps(info, indent=2) + "\n")
    return {**info, "steps": s["steps"], "train_tokens": s["train_tokens"],
            "val_loss": s["val"]["loss"], "bits_per_byte": s["val"].get("bits_per_byte"),
            "run": str(out)}


def table(results: list[dict]) -> list[str]:
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["method"], r["fraction"]), []).append(r)
    lines = ["| method | fraction | runs | rows kept | cover radius | val loss | bits/byte |",
             "|---|---|---|---|---|---|---|"]
    for (m, f), rs in sorted(groups.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
        bpb = [r["bits_per_byte"] for r in rs]
        spread = f" ({min(bpb):.3f}-{max(bpb):.3f})" if len(rs) > 1 else ""
        lines.append(f"| {m} | {f:.0%} | {len(rs)} | {rs[0]['kept']} | "
                     f"{sum(r['cover']['radius'] for r in rs) / len(rs):.3f} | "
                     f"{sum(r['val_loss'] for r in rs) / len(rs):.4f} | "
                     f"{sum(bpb) / len(bpb):.4f}{spread} |")
    return lines


def main() -> None:
    from bench_pretrain import heavy_lock

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="corpus:shakespeare")
    p.add_argument("--rows", type=int, default=1000, help="rows in the pool")
    p.add_argument("--chunk-chars", type=int, default=500)
    p.add_argument("--val-chars", type=int, default=40000)
    p.add_argument("--encoder", default="minilm")
    p.add_argument("--methods", nargs="+", default=["kcenter", "facility", "random"])
    p.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--train-seed", type=int, default=0)
    p.add_argument("--set", nargs="*", default=[], help="key=value overrides for pretrain")
    p.add_argument("--runs", default="runs/text-coresets")
    p.add_argument("--lock", default="/tmp/lmlab-heavy.lock")
    p.add_argument("--out", default="benchmarks/results/text_coresets.json")
    a = p.parse_args()
    runs = Path(a.runs)
    runs.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    with heavy_lock(a.lock):
        val = heldout(a, runs)
        for method, fraction, seed in cells(a):
            emb = str(runs / "select-full-1-s0") if results else ""
            results.append(run_cell(a, runs, val, method, fraction, seed, emb))
            print(f"[coresets] {json.dumps(results[-1])}", flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"args": vars(a), "pretrain": PRETRAIN,
                                       "results": results}, indent=2) + "\n")
    print("\n".join(table(results)))


if __name__ == "__main__":
    main()
