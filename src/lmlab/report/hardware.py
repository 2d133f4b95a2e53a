"""The report's precision table: what each training run computed in, its speed and its MFU."""

from __future__ import annotations

from lmlab.report.collect import RunData
from lmlab.report.tables import Table


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _compiled(config: dict) -> str:
    """What a run compiled for training (``compile`` / ``compile_scope`` in its config.yaml):
    ``model`` or ``blocks``, else ``no`` (also for stages without the keys). The scope is
    named because it changes the speed (docs/hardware.md)."""
    return (config.get("compile_scope") or "model") if config.get("compile") else "no"


def precision_table(runs: list[RunData]) -> Table | None:
    """One row per run that logged MFU: dtype asked, what it became (config.yaml resolved:),
    whether it compiled, mean tokens/s and MFU over its logged steps, and why."""
    t = Table("Precision and MFU", ["run", "stage", "dtype", "computed in", "compiled",
                                    "tokens/s", "MFU", "why"],
              ["text", "text", "text", "text", "text", "num", "pct", "text"])
    for r in runs:
        mfu = [m["train/mfu"] for m in r.metrics if m.get("train/mfu") is not None]
        if not mfu:
            continue
        resolved = r.config.get("resolved") or {}
        tps = [m["train/tokens_per_s"] for m in r.metrics if "train/tokens_per_s" in m]
        t.rows.append([r.label, r.stage, r.config.get("dtype", ""),
                       resolved.get("dtype", ""), _compiled(r.config), _mean(tps), _mean(mfu),
                       resolved.get("dtype_reason", "")])
    t.note = ("MFU = model FLOPs per token (6 N full, ~4 N LoRA, + attention 12 L d s) x "
              "tokens/s / the hardware probe's best matmul rate for the dtype in use "
              "(`lmlab env`; docs/hardware.md).")
    return t if t.rows else None


def hardware_tables(runs: list[RunData]) -> list[Table]:
    return [t for t in [precision_table(runs)] if t]
