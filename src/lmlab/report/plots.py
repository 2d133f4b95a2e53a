"""Training curves from ``metrics.jsonl``: loss, rewards, accuracy and KL panels per run, drawn
with matplotlib's Agg backend (no display) into PNG bytes."""

from __future__ import annotations

import io

from lmlab.report.collect import RunData

# panel title -> does a metrics key belong to it (first match wins)
PANELS = (
    ("loss", lambda k: k.endswith("loss")),
    ("accuracy", lambda k: "accuracy" in k),
    ("KL", lambda k: k.split("/")[-1].startswith("kl") or "/kl" in k),
    ("reward", lambda k: "reward" in k or "margin" in k),
)
SKIP = ("tokens", "step_s", "mem_gb", "lr", "grad_norm", "pairs", "prompts")


def series(metrics: list[dict]) -> dict[str, dict[str, tuple[list, list]]]:
    """panel -> metric key -> (steps, values), numeric values only."""
    out: dict[str, dict[str, tuple[list, list]]] = {}
    for row in metrics:
        step = row.get("step")
        if not isinstance(step, (int, float)):
            continue
        for key, v in row.items():
            if key == "step" or not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            if key.split("/")[-1] in SKIP or key.endswith("tokens_per_s"):
                continue
            for panel, belongs in PANELS:
                if belongs(key):
                    xs, ys = out.setdefault(panel, {}).setdefault(key, ([], []))
                    xs.append(step)
                    ys.append(v)
                    break
    return out


def ema(ys: list[float], alpha: float = 0.2) -> list[float]:
    """Exponential moving average (bias-corrected, so the first points are not pulled to 0)."""
    out, m = [], 0.0
    for i, y in enumerate(ys, 1):
        m = (1 - alpha) * m + alpha * y
        out.append(m / (1 - (1 - alpha) ** i))
    return out


def run_figure(run: RunData, dpi: int = 72) -> bytes | None:
    """One row of panels for ``run`` as PNG bytes, or None when it logged nothing to plot."""
    data = series(run.metrics)
    if not data:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p, _ in PANELS if p in data]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 2.6), dpi=dpi,
                             squeeze=False)
    from matplotlib.ticker import MaxNLocator

    for ax, panel in zip(axes[0], panels):
        for i, (key, (xs, ys)) in enumerate(sorted(data[panel].items())):
            color = f"C{i}"
            if len(xs) >= 8 and not key.startswith("eval/"):  # noisy per-step: faint + EMA
                ax.plot(xs, ys, color=color, linewidth=0.8, alpha=0.3)
                ax.plot(xs, ema(ys), color=color, linewidth=1.4, label=f"{key} (EMA)")
            else:
                ax.plot(xs, ys, color=color, marker="o", markersize=3, linewidth=1.2,
                        label=key)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"{run.label} ({run.stage})", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
