"""FSDP against DDP on 2 CPU ranks (gloo): step time, per-rank parameter + optimizer memory and
peak memory, and what activation checkpointing saves and costs. Same model, data, batch.

Each side is a fresh torchrun group running benchmarks/scale_worker.py (the loop's own FSDP2 /
DDP wrapping and optimizer). Step time is the median after the first step. Targets (issue 32):
FSDP's per-rank parameter+optimizer bytes <= 0.6x DDP's, its step time <= 1.3x DDP's.

    .venv/bin/python benchmarks/bench_fsdp.py --model smollm2-135m-instruct --steps 6
    .venv/bin/python benchmarks/bench_fsdp.py --smoke        # tiny model, 2 steps (a check)
    .venv/bin/python benchmarks/bench_fsdp.py --pairs 3 --steps 8   # DDP, FSDP alternately x3

``--pairs N`` drops the checkpointing sides and runs DDP then FSDP N times in turn, so that
each FSDP/DDP ratio comes from two runs next to each other in time; it reports every pair's
ratio and their median (the machine's drift between runs is as large as the effect).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

from bench_plan import LOCK, ROOT, measure

SIDES = [("ddp", False), ("fsdp", False), ("ddp", True), ("fsdp", True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=2, help="micro-batch per rank")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--smoke", action="store_true", help="tiny model, 2 steps, ddp and fsdp")
    ap.add_argument("--no-reshard", action="store_true",
                    help="fsdp_reshard=false: keep gathered weights from forward to backward")
    ap.add_argument("--pairs", type=int, default=0,
                    help="no checkpointing sides; DDP then FSDP, this many times in turn")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/fsdp.json"))
    a = ap.parse_args()
    os.environ["LMLAB_BENCH_FSDP_RESHARD"] = "0" if a.no_reshard else "1"
    if a.smoke:
        a.model, a.seq, a.batch, a.steps = "tiny:llama", 32, 1, 2
    sides = SIDES[:2] if a.smoke else SIDES
    if a.pairs:
        sides = SIDES[:2] * a.pairs
    rows = []
    with open(LOCK, "w") as lock, tempfile.TemporaryDirectory() as tmp:
        if not a.smoke:  # a smoke check measures nothing: it does not wait for heavy runs
            fcntl.flock(lock, fcntl.LOCK_EX)
        for strategy, ckpt in sides:
            got = measure(a.model, strategy, a.ranks, ckpt, a.seq, a.batch, a.steps, Path(tmp))
            held = [g["held"] for g in got]
            rows.append({"strategy": strategy, "checkpointing": ckpt,
                         "step_s": statistics.median(
                             s for g in got for s in g["step_s"][1:] or g["step_s"]),
                         "param_optim_gib_per_rank": max(
                             (h["parameters"] + h["optimizer"]) / 2**30 for h in held),
                         "peak_gib_per_rank": max(g["peak_bytes"] for g in got) / 2**30})
    if a.pairs:
        return report_pairs(a, rows)
    by = {(r["strategy"], r["checkpointing"]): r for r in rows}
    ddp, fsdp = by[("ddp", False)], by[("fsdp", False)]
    ratios = {"fsdp_vs_ddp_param_optim": fsdp["param_optim_gib_per_rank"]
              / ddp["param_optim_gib_per_rank"],
              "fsdp_vs_ddp_step_time": fsdp["step_s"] / ddp["step_s"]}
    for s in ("ddp", "fsdp"):
        if (s, True) in by:
            ratios[f"{s}_checkpointing_peak"] = (by[(s, True)]["peak_gib_per_rank"]
                                                 / by[(s, False)]["peak_gib_per_rank"])
            ratios[f"{s}_checkpointing_step_time"] = (by[(s, True)]["step_s"]
                                                      / by[(s, False)]["step_s"])
    print("| strategy | checkpointing | step s | params+optimizer GiB/rank | peak GiB/rank |")
    for r in rows:
        print(f"| {r['strategy']} | {r['checkpointing']} | {r['step_s']:.3f} | "
              f"{r['param_optim_gib_per_rank']:.4f} | {r['peak_gib_per_rank']:.3f} |")
    print(json.dumps(ratios, indent=1))
    write(a, {"rows": rows, "ratios": ratios})


def report_pairs(a, rows: list[dict]) -> None:
    pairs = [(rows[i], rows[i + 1]) for i in range(0, len(rows), 2)]
    ratios = [f["step_s"] / d["step_s"] for d, f in pairs]
    print("| pair | DDP step s | FSDP step s | FSDP / DDP | FSDP params+optimizer / DDP |")
    for i, ((d, f), r) in enumerate(zip(pairs, ratios), 1):
        mem = f["param_optim_gib_per_rank"] / d["param_optim_gib_per_rank"]
        print(f"| {i} | {d['step_s']:.3f} | {f['step_s']:.3f} | {r:.3f} | {mem:.3f} |")
    print(f"median FSDP/DDP step time over {len(ratios)} pairs: {statistics.median(ratios):.3f}")
    write(a, {"rows": rows, "pair_ratios": ratios,
              "median_fsdp_vs_ddp_step_time": statistics.median(ratios)})


def write(a, body: dict) -> None:
    report = {"model": a.model, "ranks": a.ranks, "fsdp_reshard": not a.no_reshard,
              "seq": a.seq, "batch_per_rank": a.batch, "steps": a.steps,
              "machine": platform.processor() or platform.machine(), **body}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
