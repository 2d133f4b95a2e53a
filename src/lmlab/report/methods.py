"""The report's fine-tuning-methods section: each `lmlab compare-methods` run's table (cost and
held-out accuracy per method) and a plot of accuracy against trainable parameters. Every number
comes from the run's summary.json."""

from __future__ import annotations

from lmlab.report.collect import RunData
from lmlab.report.render import Figure
from lmlab.report.tables import Table


def methods_table(r: RunData) -> Table:
    s = r.summary or {}
    t = Table(f"{r.label}: fine-tuning methods on {s.get('model')}, {s.get('steps')} steps, "
              f"seed {s.get('seed')}",
              ["method", "trainable", "% of model", "peak RSS MB", "training RSS MB",
               "s/step", "tokens/s", "acc before", "acc after", "adapter MB"],
              ["text", "int", "num", "num", "num", "num", "num", "pct", "pct", "num"])
    for m in s.get("methods", []):
        t.rows.append([m["method"], m.get("trainable_params"), m.get("trainable_pct"),
                       m.get("peak_rss_mb"), m.get("train_rss_mb"), m.get("s_per_step"), m.get("tokens_per_s"),
                       m.get("acc_before"), m.get("acc_after"), m.get("adapter_mb")])
    t.note = (f"Accuracy on {', '.join(s.get('eval_splits') or [])} prompts (greedy), before = "
              f"at step 0 (prompt/prefix tuning start from random virtual tokens). Memory: "
              f"{s.get('memory')}. Adapter MB: the saved weights in final/ (full: the model).")
    return t


def accuracy_png(rows: list[dict]) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3), dpi=72)
    for m in rows:
        if m.get("acc_after") is None or not m.get("trainable_params"):
            continue
        ax.scatter(m["trainable_params"], 100 * m["acc_after"], s=18)
        ax.annotate(m["method"], (m["trainable_params"], 100 * m["acc_after"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters", fontsize=8)
    ax.set_ylabel("held-out accuracy after (%)", fontsize=8)
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def methods_items(runs: list[RunData]) -> list:
    """Tables and figures, [] when no compare-methods run is among ``runs``."""
    done = [r for r in runs if r.stage == "compare-methods" and r.summary]
    items: list = []
    for i, r in enumerate(done):
        items.append(methods_table(r))
        rows = r.summary.get("methods", [])
        if any(m.get("acc_after") is not None for m in rows):
            items.append(Figure(f"methods{i:02d}-{r.label.replace('/', '_')}",
                                accuracy_png(rows),
                                f"{r.label}: held-out accuracy vs trainable parameters"))
    return items
