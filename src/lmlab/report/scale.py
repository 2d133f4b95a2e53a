"""The report's scale-out table: how each training run was spread and what it held."""

from __future__ import annotations

from lmlab.report.collect import RunData
from lmlab.report.tables import Table


def scale_table(runs: list[RunData]) -> Table | None:
    """One row per training run that ran sharded or with activation checkpointing."""
    t = Table("Scale-out", ["run", "stage", "strategy", "offload", "checkpointing",
                            "peak memory (GB)", "tokens/s"],
              ["text", "text", "text", "text", "text", "num", "num"])
    for r in runs:
        c = r.config
        if c.get("strategy") != "fsdp" and not c.get("activation_checkpointing"):
            continue
        mem = [m["train/mem_gb"] for m in r.metrics if m.get("train/mem_gb") is not None]
        tps = [m["train/tokens_per_s"] for m in r.metrics if "train/tokens_per_s" in m]
        t.rows.append([r.label, r.stage, c.get("strategy", "ddp"),
                       "yes" if c.get("fsdp_offload") else "no",
                       "yes" if c.get("activation_checkpointing") else "no",
                       max(mem) if mem else None, sum(tps) / len(tps) if tps else None])
    t.note = ("Peak memory is rank 0's (GPU: allocated; CPU: peak resident size). "
              "See docs/scale.md and `lmlab plan` for the per-device arithmetic.")
    return t if t.rows else None
