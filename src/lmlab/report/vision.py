"""The report's vision section: every ``lmlab vision`` run's accuracy and speed, the coreset
comparison, parameters and FLOPs per model, the LR range test, gradient norms per layer, and
the pictures the stage drew (confusion matrix, misclassified images, feature maps).
Numbers come from summary.json, flops.json, lr_range.json and insight/ only."""

from __future__ import annotations

import json
from pathlib import Path

from lmlab.report.collect import RunData
from lmlab.report.render import Figure
from lmlab.report.tables import Table

PICTURES = (("confusion.png", "confusion matrix (test set)"),
            ("misclassified.png", "misclassified test images: true -> predicted"),
            ("feature_maps.png", "feature maps of each conv stage, one test image"))


def _read(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def runs_table(runs: list[RunData]) -> Table:
    t = Table("Vision runs", ["run", "model", "data", "subset", "train images", "params",
                              "MFLOPs/image", "test accuracy", "images/s", "train time"],
              ["text", "text", "text", "text", "int", "int", "num", "pct", "num", "sec"])
    for r in runs:
        s = r.summary or {}
        sub = s.get("subset") or {}
        method = sub.get("method", "none")
        subset = "full" if method == "none" else f"{method} {sub.get('fraction', 0):.0%}"
        flops = s.get("forward_flops")
        model = s.get("model")
        if s.get("start"):  # efficientnet-lite0: imagenet / scratch / a run, and its input side
            side = f", {s['input_size']}px" if s.get("input_size") else ""
            model = f"{model} ({s['start']}{side})"
        t.rows.append([r.label, model, s.get("data"), subset, s.get("train_images"),
                       s.get("params"), flops / 1e6 if flops else None, s.get("test_accuracy"),
                       s.get("images_per_s"), s.get("train_seconds")])
    return t


def weights_table(runs: list[RunData]) -> Table | None:
    """Test accuracy of each run's last weights and weight average (ema), with and without
    flip averaging (summary.json's accuracy_by_weights); None when no run has them."""
    rows = [(r, (r.summary or {}).get("accuracy_by_weights")) for r in runs]
    rows = [(r, acc) for r, acc in rows if acc]
    if not rows:
        return None
    t = Table("Vision: test accuracy by weights (last / weight average, without / with flip "
              "averaging)", ["run", "ema decay", "last", "last+flip", "ema", "ema+flip"],
              ["text", "num", "pct", "pct", "pct", "pct"])
    for r, acc in rows:
        t.rows.append([r.label, r.summary.get("ema") or None, acc.get("last"),
                       acc.get("last+flip"), acc.get("ema"), acc.get("ema+flip")])
    return t


def coreset_table(runs: list[RunData]) -> Table | None:
    """Mean test accuracy per (method, fraction) over the runs (seeds) that share them."""
    groups: dict[tuple, list] = {}
    for r in runs:
        s = r.summary or {}
        sub = s.get("subset") or {}
        if "test_accuracy" not in s:
            continue
        key = (sub.get("method", "none"), sub.get("fraction", 1.0) if sub.get("method",
                                                                            "none") != "none"
               else 1.0, s.get("model"), s.get("steps"))
        groups.setdefault(key, []).append(s)
    if len({k[0] for k in groups}) < 2:
        return None
    t = Table("Coresets: accuracy vs fraction (mean over seeds, same model and steps)",
              ["method", "fraction", "model", "steps", "runs", "test accuracy", "min", "max",
               "train time"], ["text", "pct", "text", "int", "int", "pct", "pct", "pct", "sec"])
    for (method, frac, model, steps), ss in sorted(groups.items(), key=lambda kv: (
            -kv[0][1], kv[0][0])):
        acc = [x["test_accuracy"] for x in ss]
        secs = [x.get("train_seconds", 0) for x in ss]
        t.rows.append([method, frac, model, steps, len(ss), sum(acc) / len(acc), min(acc),
                       max(acc), sum(secs) / len(secs)])
    return t


def flops_table(run: RunData) -> Table | None:
    data = _read(run.path / "flops.json")
    if not isinstance(data, dict) or not data.get("models"):
        return None
    shape = "x".join(map(str, data.get("input", [])))
    t = Table(f"Parameters and FLOPs per model (measured, input {shape})",
              ["model", "params", "forward MFLOPs/image", "train MFLOPs/image"],
              ["text", "int", "num", "num"],
              note="FLOPs counted by torch.utils.flop_counter over one forward pass "
                   "(2 per multiply-add; matmuls and convolutions); training ~ 3x forward.")
    for m in data["models"]:
        t.rows.append([m["model"], m["params"], m["forward_flops"] / 1e6,
                       m["train_flops"] / 1e6])
    return t


def _plot(draw) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3), dpi=72)
    draw(ax)
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def lr_range_png(data: dict) -> bytes:
    def draw(ax):
        ax.plot(data["lr"], data["loss"], alpha=0.3, label="loss")
        ax.plot(data["lr"], data["smoothed"], label="smoothed")
        if data.get("suggested_lr"):
            ax.axvline(data["suggested_lr"], color="C3", linestyle="--",
                       label=f"steepest fall {data['suggested_lr']:.2g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate", fontsize=8)
        ax.set_ylabel("training loss", fontsize=8)
        ax.legend(fontsize=7)
    return _plot(draw)


def gradnorms_png(rows: list[dict]) -> bytes:
    by_step = {r["step"]: r for r in rows}  # a resumed run rewrites steps: keep the last
    steps = sorted(by_step)
    layers = [k for k in by_step[steps[0]] if k != "step"]

    def draw(ax):
        for i, layer in enumerate(layers):
            ax.plot(steps, [by_step[s].get(layer) for s in steps], label=layer,
                    color=f"C{i % 10}", linestyle="-" if i < 10 else "--")
        ax.set_yscale("log")
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("gradient L2 norm", fontsize=8)
        ax.legend(fontsize=5, ncol=2)
    return _plot(draw)


def run_figures(r: RunData, tag: str) -> list[Figure]:
    figs = []
    sweep = _read(r.path / "lr_range.json")
    if isinstance(sweep, dict) and sweep.get("lr"):
        figs.append(Figure(f"{tag}-lr-range", lr_range_png(sweep),
                           f"{r.label}: LR range test (lr_range.json)"))
    norms = r.path / "insight" / "gradnorms.jsonl"
    if norms.exists():
        rows = [json.loads(x) for x in norms.read_text().splitlines() if x.strip()]
        if rows:
            figs.append(Figure(f"{tag}-gradnorms", gradnorms_png(rows),
                               f"{r.label}: gradient norm per layer through training"))
    for name, caption in PICTURES:
        png = r.path / "insight" / name
        if png.exists():
            figs.append(Figure(f"{tag}-{png.stem}", png.read_bytes(), f"{r.label}: {caption}"))
    return figs


def vision_items(runs: list[RunData]) -> list:
    """The section's tables and figures, [] when no vision run is among ``runs``."""
    vis = [r for r in runs if r.stage == "vision" and r.finished]
    if not vis:
        return []
    items: list = [runs_table(vis)]
    if weights_table(vis):
        items.append(weights_table(vis))
    for t in (coreset_table(vis), next((flops_table(r) for r in vis if flops_table(r)), None)):
        if t:
            items.append(t)
    for i, r in enumerate(vis):
        items += run_figures(r, f"vision{i:02d}-{r.label.replace('/', '_')}")
    return items
