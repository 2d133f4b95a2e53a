"""CoreSets: test accuracy and wall time vs training-set fraction, coreset vs random vs full.

Each (method, fraction, seed) trains `lmlab vision` for the same number of epochs over its
subset (so a half-size subset takes half the steps: the time a coreset saves; with
``--full-epochs`` = epochs x fraction the full set trains the same steps instead), methods
random / kcenter / facility (CRAIG) / ccs / el2n / moderate / trimmed per class, and the full
set as the reference; mean over ``--seeds``. Writes a JSON table, a markdown table and a plot. Holds
/tmp/lmlab-heavy.lock while it runs.

    .venv/bin/python benchmarks/bench_coresets.py --fractions 0.1 0.3 0.5 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vision import heavy_lock


def one(args, method: str, fraction: float, seed: int, out: Path) -> dict:
    from lmlab.config import load_config
    from lmlab.stages import vision

    # the recipe may name a subset (coreset.yaml does): the full-set reference overrides it
    # "kcenter-proxy" / "facility-proxy": those methods on the proxy run's features
    # "facility-gradient": CRAIG on the proxy's per-image last-layer gradients
    base, _, feats = method.partition("-")
    subset = ["subset=none"] if method == "full" else [
        f"subset={base}", f"subset_fraction={fraction}",
        *([f"subset_features={feats}"] if feats else [])]
    cfg = load_config(vision.Config, args.config, [
        f"data={args.data}", f"model={args.model}",
        f"epochs={args.full_epochs if method == 'full' and args.full_epochs else args.epochs}",
        f"output_dir={out}", f"seed={seed}", "overwrite=true", "progress=false",
        "insight=false", "flops_table=false", "probe_every=0", "save_every=0",
        *subset, *([f"data_limit={args.limit}"] if args.limit else []), *args.set])
    t0 = time.time()
    s = vision.run(cfg)
    return {"method": method, "fraction": 1.0 if method == "full" else fraction, "seed": seed,
            "test_accuracy": s["test_accuracy"], "train_seconds": s["train_seconds"],
            "select_seconds": s["subset"].get("select_seconds", 0.0),
            "wall_seconds": round(time.time() - t0, 1), "steps": s["steps"]}


def summarise(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["fraction"]), []).append(r)
    out = []
    for (method, frac), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        acc = [r["test_accuracy"] for r in rs]
        out.append({"method": method, "fraction": frac, "seeds": len(rs),
                    "accuracy_mean": sum(acc) / len(acc), "accuracy_min": min(acc),
                    "accuracy_max": max(acc),
                    "train_seconds": sum(r["train_seconds"] for r in rs) / len(rs),
                    "select_seconds": sum(r["select_seconds"] for r in rs) / len(rs)})
    return out


def plot(table: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=90)
    methods = ("random", "kcenter", "facility", "ccs", "el2n", "moderate", "trimmed",
               "kcenter-proxy", "facility-proxy", "facility-gradient")
    for i, method in enumerate(methods):
        pts = [r for r in table if r["method"] == method]
        if pts:
            ax.plot([r["fraction"] for r in pts], [r["accuracy_mean"] for r in pts], marker="o",
                    color=f"C{i}", label=method)
    full = [r for r in table if r["method"] == "full"]
    if full:
        ax.axhline(full[0]["accuracy_mean"], color="k", linestyle="--", label="full set")
    ax.set_xlabel("fraction of the training set")
    ax.set_ylabel("test accuracy (mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/vision/coreset.yaml",
                   help="recipe every run starts from (its subset keys are overridden)")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--model", default="cnn")
    p.add_argument("--epochs", type=float, default=6)
    p.add_argument("--full-epochs", type=float, default=0,
                   help="epochs of the full-set runs (0 = --epochs); --epochs 12 --full-epochs 6 "
                        "compares 50%% subsets with the full set at equal steps")
    p.add_argument("--limit", type=int, default=0, help="training images (0 = all)")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.3, 0.5])
    p.add_argument("--methods", nargs="+", default=["random", "kcenter", "facility"],
                   help="random kcenter facility ccs el2n moderate trimmed kcenter-proxy "
                        "facility-proxy facility-gradient")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--set", nargs="*", default=[], help="extra key=value for every run")
    p.add_argument("--runs", default="runs/coresets", help="folder for the run folders")
    p.add_argument("--no-full", action="store_true", help="skip the full-set reference runs")
    p.add_argument("--no-lock", action="store_true", help="don't wait for the heavy-run lock")
    p.add_argument("--out", default="benchmarks/results/coresets.json")
    args = p.parse_args()
    rows = []
    with heavy_lock(not args.no_lock):
        for seed in args.seeds:
            if not args.no_full:
                rows.append(one(args, "full", 1.0, seed, Path(args.runs) / f"full-s{seed}"))
            for frac in args.fractions:
                for m in args.methods:
                    rows.append(one(args, m, frac, seed,
                                    Path(args.runs) / f"{m}-{frac:g}-s{seed}"))
    table = summarise(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "runs": rows, "table": table}, indent=2)
                   + "\n")
    plot(table, out.with_suffix(".png"))
    print("| method | fraction | seeds | test accuracy (mean) | min | max | train s | select s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['method']} | {r['fraction']:.0%} | {r['seeds']} | "
              f"{r['accuracy_mean']:.2%} | {r['accuracy_min']:.2%} | {r['accuracy_max']:.2%} | "
              f"{r['train_seconds']:.0f} | {r['select_seconds']:.1f} |")


if __name__ == "__main__":
    main()
