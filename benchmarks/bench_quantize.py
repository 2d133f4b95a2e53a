"""The quantization trade-off table: one `lmlab quantize` run per row, same model, same
held-out text, tasks and decode prompt, one process, rows in sequence.

    .venv/bin/python benchmarks/bench_quantize.py --model smollm2-135m-instruct --threads 2

Writes runs/bench-quantize/<row>/ (each a quantize run) and prints / saves the markdown
table (benchmarks/results/quantize.json holds every summary).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# row name: quantize overrides
ROWS = {
    "fp32": ["method=fp32"],
    "fbgemm-int8": ["method=fbgemm-int8"],
    "fbgemm-fp16": ["method=fbgemm-fp16"],
    "int8-weight": ["method=int8-weight"],
    "int4-weight g32": ["method=int4-weight", "group_size=32"],
    "int8-dynamic-int4 g32": ["method=int8-dynamic-int4", "group_size=32"],
    "nf4 (bitsandbytes)": ["method=nf4"],
    "bf16": ["method=bf16"],
    "fp16": ["method=fp16"],
    "int8-dynamic": ["method=int8-dynamic"],
    "int8 (bitsandbytes)": ["method=bnb-int8"],
    "pruned 50% unstructured, fp32": ["method=fp32", "prune=unstructured", "sparsity=0.5"],
    "pruned 25% MLP channels, fp32": ["method=fp32", "prune=structured", "sparsity=0.25"],
}


def row_line(name: str, s: dict, fp: dict | None) -> str:
    mib = s["weight_bytes"] / 2**20
    ratio = f"{fp['weight_bytes'] / s['weight_bytes']:.2f}x" if fp else ""
    speed = f"{s['decode_tok_s']:.1f}" + (f" ({s['decode_tok_s'] / fp['decode_tok_s']:.2f}x)"
                                          if fp else "")
    ppl = f"{s['perplexity']:.2f}" + (f" ({s['perplexity'] / fp['perplexity'] - 1:+.1%})"
                                      if fp else "")
    accs = " / ".join(f"{s[k]:.2f}" for k in sorted(s) if k.startswith("accuracy/"))
    acc = f"{s['accuracy']:.2f} ({accs})" if "accuracy" in s else "-"
    return (f"| {name} | {mib:.0f} MiB ({ratio}) | {s['disk_bytes'] / 2**20:.0f} MiB | {speed} | "
            f"{s['prefill_tok_s']:.0f} | {ppl} | {acc} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--rows", nargs="*", default=list(ROWS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tasks", default="task:compare,add")
    ap.add_argument("--eval-n", type=int, default=30)
    ap.add_argument("--ppl-windows", type=int, default=8)
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--out", default="runs/bench-quantize")
    args = ap.parse_args()

    import torch

    from lmlab.cli import main as lmlab

    torch.set_num_threads(args.threads)
    results: dict = {}
    for name in args.rows:
        t0 = time.time()
        out = Path(args.out) / name.split(" ")[0].replace("%", "")
        if "pruned" in name:
            out = Path(args.out) / ("prune-" + ROWS[name][1].split("=")[1])
        rc = lmlab(["quantize", f"model={args.model}", f"data={args.tasks}", f"output_dir={out}",
                    "overwrite=true", "compare_fp32=false", f"eval_n={args.eval_n}",
                    f"ppl_windows={args.ppl_windows}", f"decode_tokens={args.decode_tokens}",
                    *ROWS[name]])
        if rc == 0:
            results[name] = json.loads((out / "summary.json").read_text())
            results[name]["wall_s"] = round(time.time() - t0, 1)
        print(f"[bench] {name}: rc={rc}, {time.time() - t0:.0f} s", flush=True)
        write(results, args, torch.__version__)  # after every row: a timeout keeps what ran


def write(results: dict, args, torch_version: str) -> None:
    fp = results.get("fp32")
    lines = ["| variant | weights in memory (vs fp32) | on disk | batch-1 decode tok/s "
             "(vs fp32) | prefill tok/s (128) | perplexity (vs fp32) | task accuracy "
             f"({args.tasks[5:].replace(',', ' / ')}) |", "|---|---|---|---|---|---|---|"]
    lines += [row_line(n, s, fp) for n, s in results.items()]
    print("\n".join(lines), flush=True)
    meta = {"machine": platform.processor() or platform.machine(), "threads": args.threads,
            "torch": torch_version, "args": vars(args)}
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    Path("benchmarks/results/quantize.json").write_text(
        json.dumps({"meta": meta, "rows": results, "table": lines}, indent=1, default=str))

if __name__ == "__main__":
    main()
