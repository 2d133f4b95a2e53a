"""Every fine-tuning method: `lmlab sft method=X` vs the same peft tuner through TRL
`SFTTrainer`, same model, data, lengths, batch and machine, side by side in one run.

Reuses bench_sft's two sides (``bench_lmlab``, ``bench_trl``); s/step and useful tokens/s after
``--warmup`` steps, each method's two sides run back to back under ``/tmp/lmlab-heavy.lock``.
``adapter`` (our bottleneck adapters) has no peft twin: TRL is n/a there. A side that cannot run
a method records its error instead of a number.

    .venv/bin/python benchmarks/bench_methods.py --steps 12 --warmup 2
    .venv/bin/python benchmarks/bench_methods.py --model tiny:llama --steps 2 --warmup 1 \\
        --rows 16 --methods lora prompt adapter   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_pretrain import LOCK, heavy_lock
from bench_sft import MODEL, bench_lmlab, bench_trl, lora_config, rows

METHODS = ["full", "lora", "dora", "ia3", "prefix", "prompt", "ptuning", "adapter"]
VIRTUAL = 20  # num_virtual_tokens on both sides


def peft_twin(method: str):
    """The peft config TRL trains for ``method`` (None: full fine-tuning; "n/a": no twin)."""
    from peft import (
        IA3Config,
        PrefixTuningConfig,
        PromptEncoderConfig,
        PromptTuningConfig,
    )

    return {
        "full": lambda: None,
        "lora": lora_config,
        "dora": lambda: lora_config(use_dora=True),
        "ia3": lambda: IA3Config(task_type="CAUSAL_LM"),  # peft's llama defaults = ours
        "prefix": lambda: PrefixTuningConfig(num_virtual_tokens=VIRTUAL, task_type="CAUSAL_LM"),
        "prompt": lambda: PromptTuningConfig(num_virtual_tokens=VIRTUAL, task_type="CAUSAL_LM"),
        "ptuning": lambda: PromptEncoderConfig(num_virtual_tokens=VIRTUAL,
                                               task_type="CAUSAL_LM"),
        "adapter": lambda: "n/a",
    }[method]()


def one_method(method: str, args, data, data_file: Path, tmp: Path) -> dict:
    ours = bench_lmlab(method, args, data_file, tmp / f"lmlab-{method}",
                       extra=(f"num_virtual_tokens={VIRTUAL}",))
    twin = peft_twin(method)
    if twin == "n/a":
        return {"lmlab": ours, "trl": "n/a: peft has no bottleneck-adapter tuner"}
    try:
        theirs = bench_trl(method, args, data, tmp / f"trl-{method}", peft_config=twin)
    except Exception as e:  # noqa: BLE001 - a method TRL cannot run is a result, not a crash
        return {"lmlab": ours, "trl": f"error: {type(e).__name__}: {str(e)[:300]}"}
    return {"lmlab": ours, "trl": theirs, "speedup": theirs["step_s"] / ours["step_s"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--rows", type=int, default=400)
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--model", default=MODEL, help="model alias or folder (both sides)")
    p.add_argument("--out", default="benchmarks/results/methods.json")
    args = p.parse_args()
    # what bench_sft's two sides read besides these
    args.device, args.dtype, args.packing = "cpu", "fp32", False
    if args.threads:
        torch.set_num_threads(args.threads)

    data = rows(args.rows)
    results = {}
    with heavy_lock(LOCK), tempfile.TemporaryDirectory() as tmp:
        data_file = Path(tmp) / "rows.jsonl"
        data_file.write_text("".join(json.dumps({"messages": r["messages"]}) + "\n"
                                     for r in data))
        for method in args.methods:
            results[method] = one_method(method, args, data, data_file, Path(tmp))
    env = {"python": sys.version.split()[0], "torch": torch.__version__,
           "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
           "cores": os.cpu_count()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "env": env, "results": results},
                                         indent=2) + "\n")
    print("| method | lmlab s/step | TRL s/step | lmlab tok/s | TRL tok/s | speed-up |")
    print("|---|---|---|---|---|---|")
    for method, r in results.items():
        ours, theirs = r["lmlab"], r["trl"]
        if isinstance(theirs, str):
            print(f"| {method} | {ours['step_s']:.3f} | {theirs} | {ours['tokens_per_s']:.0f} "
                  f"| | |")
            continue
        print(f"| {method} | {ours['step_s']:.3f} | {theirs['step_s']:.3f} | "
              f"{ours['tokens_per_s']:.0f} | {theirs['tokens_per_s']:.0f} | "
              f"{r['speedup']:.2f}x |")


if __name__ == "__main__":
    main()
