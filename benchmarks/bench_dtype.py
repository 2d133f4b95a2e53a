"""Training precision: `dtype=fp32` vs `dtype=auto` side by side for SFT (full, LoRA) and DPO.

Same model, data, steps, batch and seed; only ``dtype`` differs. ``auto`` is what the hardware
probe picks here (bf16 autocast over fp32 weights where bf16 matmuls are >= 1.3x fp32, else
fp32; ``lmlab env`` shows the table); under CPU autocast the loop attends in fp32, steps a
fused AdamW, casts each weight once per optimizer step and frozen (LoRA base)
weights once per run (docs/hardware.md). ``--dtypes``
adds ``bf16`` (weights held in bf16, no master copy: a reference, not what auto picks);
``--grad-accum`` > 1 shows the once-per-step cast; ``auto+compile`` (or ``fp32+compile``) runs
the stage with ``compile=true`` too (its first steps compile: keep them in ``--warmup``). Reported per mode and dtype: useful
tokens/s (non-pad input tokens per second of optimizer steps after ``--warmup`` steps), mean
MFU over the same steps (model FLOPs / the probe's matmul rate for the dtype in use), the
first and final loss, and the loss gap (largest |loss_auto - loss_fp32| over all steps).
``--eval-n`` adds the held-out task accuracy after training (SFT only). ``--packing`` packs SFT's
short task rows (~74 tokens) into ``--max-len`` rows, so ``--batch 8 --max-len 512 --packing``
trains ~4,096 tokens a step instead of ~590 (MFU grows with tokens per step, docs/hardware.md).
Each run alone under /tmp/lmlab-heavy.lock.

    .venv/bin/python benchmarks/bench_dtype.py --steps 12 --warmup 2
    .venv/bin/python benchmarks/bench_dtype.py --model tiny:llama --steps 2 --warmup 1  # smoke
    .venv/bin/python benchmarks/bench_dtype.py --steps 12 --warmup 2 --dtypes fp32 auto bf16
    .venv/bin/python benchmarks/bench_dtype.py --steps 6 --warmup 2 --modes sft-full \
        --batch 8 --max-len 512 --packing --rows 2000  # MFU at ~4k tokens a step
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MODEL = "smollm2-135m-instruct"
TASKS = ["add", "sort"]
LOCK = "/tmp/lmlab-heavy.lock"
MODES = ("sft-full", "sft-lora", "dpo-lora", "dpo-full", "sft-dora")


@contextlib.contextmanager
def heavy_lock(path: str):
    with open(path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[bench] waiting for {path} (another heavy run holds it)", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def write_data(folder: Path, n: int) -> dict[str, Path]:
    from lmlab.data.tasks import task_rows

    chat = folder / "chat.jsonl"
    chat.write_text("".join(json.dumps({"messages": r["messages"]}) + "\n"
                            for r in task_rows(TASKS, "chat", "train", n=n, seed=0)))
    prefs = folder / "pairs.jsonl"
    prefs.write_text("".join(json.dumps({k: r[k] for k in ("prompt", "chosen", "rejected")})
                             + "\n" for r in task_rows(TASKS, "preference", "train", n=n,
                                                       seed=0)))
    return {"sft": chat, "dpo": prefs}


def overrides(mode: str, dtype: str, args, data: dict[str, Path], out: Path) -> list[str]:
    """The stage's keys for one run; a dtype with ``+compile`` (``auto+compile``) adds
    ``compile=true``."""
    stage, method = mode.split("-")
    dtype, plus = dtype.split("+", 1) if "+" in dtype else (dtype, "")
    common = [f"model={args.model}", f"device={args.device}", f"dtype={dtype}",
              f"output_dir={out}", f"method={method}", f"max_steps={args.steps}",
              f"batch_size={args.batch}", f"max_len={args.max_len}", "progress=false",
              f"grad_accum={args.grad_accum}",
              "save_every=0", "schedule=constant", "warmup_steps=0", "seed=0", "overwrite=true",
              f"data={data[stage]}"]
    if plus:
        if plus != "compile":
            raise SystemExit(f"--dtypes {dtype}+{plus}: only +compile is known")
        common.append("compile=true")
    adapter = method in ("lora", "dora")  # (DoRA takes LoRA's keys)
    if adapter:
        common += ["merge_on_save=false", "lora_dropout=0.0"]
    if stage == "sft":
        return common + [f"lr={2e-4 if adapter else 2e-5}", f"eval_n={args.eval_n}",
                         f"eval_tasks={','.join(TASKS)}", f"packing={str(args.packing).lower()}"]
    return common + ["loss=dpo", "beta=0.1", "lr=5e-5", "eval_n=0", "kl_n=0", "task_eval_n=0"]


def run_one(mode: str, dtype: str, args, data, out: Path) -> dict:
    from lmlab.config import load_config
    from lmlab.stages import load_stage

    module = load_stage(mode.split("-")[0])
    cfg = load_config(module.Config, None, overrides(mode, dtype, args, data, out))
    with heavy_lock(LOCK):
        summary = module.run(cfg)
    import yaml

    resolved = (yaml.safe_load((out / "config.yaml").read_text()).get("resolved") or {})
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    timed = metrics[args.warmup:] or metrics
    seconds = sum(m["train/step_s"] for m in timed)
    mfus = [m["train/mfu"] for m in timed if "train/mfu" in m]
    return {"resolved": resolved.get("dtype", dtype), "reason": resolved.get("dtype_reason"),
            "tokens_per_s": sum(m["train/tokens"] for m in timed) / seconds,
            "step_s": seconds / len(timed),
            "tokens_per_step": sum(m["train/tokens"] for m in timed) / len(timed), "mfu": sum(mfus) / len(mfus) if mfus else None,
            "losses": [m["train/loss"] for m in metrics],
            "eval_after": summary.get("eval_after") if isinstance(summary, dict) else None}


def compare(fp32: dict, auto: dict) -> dict:
    gaps = [abs(a - b) for a, b in zip(auto["losses"], fp32["losses"])]
    return {"speedup": auto["tokens_per_s"] / fp32["tokens_per_s"],
            "loss_gap_max": max(gaps) if gaps else None,
            "final_loss_gap": auto["losses"][-1] - fp32["losses"][-1]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step")
    p.add_argument("--dtypes", nargs="+", default=["fp32", "auto"],
                   choices=["fp32", "auto", "bf16", "fp32+compile", "auto+compile"],
                   help="dtypes to run (fp32 first: the others are compared with it)")
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--packing", action="store_true",
                   help="SFT: pack the short task rows into --max-len rows (batch x max-len "
                        "tokens a step, for MFU at more tokens per step)")
    p.add_argument("--rows", type=int, default=400)
    p.add_argument("--modes", nargs="+", default=list(MODES[:3]), choices=MODES)
    p.add_argument("--eval-n", type=int, default=0, help="SFT: held-out prompts per task")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--model", default=MODEL)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--out", default="benchmarks/results/dtype.json")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from lmlab.common import probe_table
    from lmlab.hardware import format_table, speedup

    table = probe_table(torch.device(args.device))
    print("\n".join(format_table(table)), flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = write_data(Path(tmp), args.rows)
        for mode in args.modes:
            r = {d: run_one(mode, d, args, data, Path(tmp) / f"{mode}-{d}")
                 for d in dict.fromkeys(["fp32", *args.dtypes])}
            results[mode] = {**r, **(compare(r["fp32"], r["auto"]) if "auto" in r else {}),
                             "vs_fp32": {d: compare(r["fp32"], x) for d, x in r.items()
                                         if d != "fp32"}}
    env = {"python": sys.version.split()[0], "torch": torch.__version__,
           "threads": torch.get_num_threads(), "cpu": table.get("model"),
           "flags": table.get("flags"), "bf16_over_fp32_matmul": speedup(table, "bf16"),
           "cores": os.cpu_count(), "LMLAB_AUTO_DTYPE": os.environ.get("LMLAB_AUTO_DTYPE")}
    report = {"args": vars(args), "env": env, "probe": table, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{env['cpu']}, {env['threads']} threads, torch {env['torch']}")
    print("| mode | dtype | = | tok/s | vs fp32 | MFU | final loss | max loss gap vs fp32 "
          "| tok/step |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mode, r in results.items():
        for d in dict.fromkeys(["fp32", *args.dtypes]):
            x, c = r[d], r["vs_fp32"].get(d)
            pct = f"{100 * x['mfu']:.1f}%" if x["mfu"] is not None else "-"
            print(f"| {mode} | {d} | {x['resolved']} | {x['tokens_per_s']:.0f} "
                  f"| {c['speedup'] if c else 1.0:.2f}x | {pct} | {x['losses'][-1]:.4f} "
                  f"| {c['loss_gap_max'] if c else 0.0:.4f} | {x['tokens_per_step']:.0f} |")


if __name__ == "__main__":
    main()
