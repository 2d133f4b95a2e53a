"""Where a training step's time goes: torch.profiler's op table for one SFT step, fp32 vs bf16
autocast the way the training loop runs it (fp32 attention and the fused AdamW under CPU
autocast, loop.amp_context / cpu_amp_attention), plus the matmuls' achieved GFLOP/s and the
count of casts. Shares are the point: on a shared machine the absolute times are not.

    .venv/bin/python benchmarks/profile_train_step.py --threads 2
    .venv/bin/python benchmarks/profile_train_step.py --threads 1 --method lora --only bf16 \
        --casts-shown 12   # LoRA under autocast: which tensors are still cast, at what cost
    .venv/bin/python benchmarks/profile_train_step.py --only bf16 --packing --max-len 512 \
        --rows 400   # full SFT at 8 x 512 packed tokens a step
    .venv/bin/python benchmarks/profile_train_step.py --model tiny:llama --rows 8  # smoke
"""

from __future__ import annotations

import argparse
import contextlib
import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def batch_of(model_name: str, rows: int, batch: int, max_len: int,
             packing: bool = False) -> dict:
    from lmlab.data import collate, encode_rows, pack
    from lmlab.data.tasks import task_rows
    from lmlab.models import load_tokenizer

    tok = load_tokenizer(model_name)
    chat = list(task_rows(["add", "sort"], "chat", "train", n=rows, seed=0))
    examples, _ = encode_rows(tok, chat, "chat", max_len, on_long="skip", train_on="assistant")
    if packing:  # SFT's packing=true: short rows packed into max_len rows
        examples = pack(examples, max_len)
    return collate(examples[:batch], tok.pad_token_id)


def profile_step(model, optimizer, batch: dict, amp: bool, row_limit: int,
                 casts_shown: int = 0) -> dict:
    from torch.profiler import ProfilerActivity, profile

    from lmlab.losses.objectives import LMObjective
    from lmlab.train.loop import amp_context, cpu_amp_attention, cpu_amp_casts

    objective, cpu = LMObjective(), torch.device("cpu")
    params = [p for p in model.parameters() if p.requires_grad]
    casts = cpu_amp_casts(model) if amp else None  # what the loop does under CPU autocast

    def step():
        ctx = amp_context(cpu, torch.bfloat16, torch.float32) if amp \
            else contextlib.nullcontext()
        with cpu_amp_attention(model, amp), ctx, \
                (casts.step() if casts else contextlib.nullcontext()):
            loss, _ = objective(model, batch)
            (loss / objective.count(batch)).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up: oneDNN's first calls, the optimizer's state
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    ops = prof.key_averages()
    print(ops.table(sort_by="self_cpu_time_total", row_limit=row_limit,
                    max_name_column_width=48))
    total = sum(e.self_cpu_time_total for e in ops)
    flops = us = 0.0
    for e in prof.key_averages(group_by_input_shape=True):
        if e.key == "aten::mm" and len(e.input_shapes) >= 2:
            (m, k), (_, n) = e.input_shapes[0], e.input_shapes[1]
            flops += 2.0 * m * k * n * e.count
            us += e.self_cpu_time_total
    counts = {e.key: e.count for e in ops if e.key in ("aten::_to_copy", "aten::copy_")}
    copy_us = sum(e.self_cpu_time_total for e in ops if e.key == "aten::copy_")
    if casts_shown:  # the copies by shape: which tensors are cast, how often, at what cost
        rows = sorted((e for e in prof.key_averages(group_by_input_shape=True)
                       if e.key == "aten::copy_"), key=lambda e: -e.self_cpu_time_total)
        print("copy_ by input shapes (dst, src): calls, self ms")
        for e in rows[:casts_shown]:
            print(f"  {e.input_shapes[:2]!s:<40} {e.count:>5} "
                  f"{e.self_cpu_time_total / 1e3:8.1f}")
    out = {"step_self_ms": total / 1e3, "mm_gflop": flops / 1e9, "mm_ms": us / 1e3,
           "mm_gflops_per_s": flops / us / 1e3 if us else None,
           "mm_share": us / total if total else None, "copy_ms": copy_us / 1e3, **counts}
    print(" ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in out.items()), flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--method", default="full", choices=["full", "lora"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--rows", type=int, default=64)
    p.add_argument("--packing", action="store_true", help="pack the rows as sft packing=true")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--rows-shown", type=int, default=16, help="op table rows")
    p.add_argument("--casts-shown", type=int, default=0, help="copy_ rows by shape")
    p.add_argument("--only", choices=["fp32", "bf16"], help="profile one side only")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from lmlab.models import load_model
    from lmlab.train.config import TrainConfig
    from lmlab.train.loop import build_optimizer

    batch = batch_of(args.model, args.rows, args.batch, args.max_len, args.packing)
    print(f"batch {tuple(batch['input_ids'].shape)}, {torch.get_num_threads()} threads")
    results = {}
    sides = [("fp32", False), ("bf16 autocast", True)]
    for name, amp in [x for x in sides if args.only in (None, x[0].split()[0])]:
        torch.manual_seed(0)
        model = load_model(args.model, dtype=torch.float32, device=torch.device("cpu"))
        if args.method == "lora":
            from lmlab.models.adapters import add_lora

            model = add_lora(model, r=16, alpha=32, dropout=0.0, targets=[])
        model.train()
        # what the loop builds: torch's AdamW loop for fp32, the fused one under CPU autocast
        optimizer = build_optimizer(model, TrainConfig(lr=1e-9), fused=amp)
        print(f"\n== {name} ({args.method})")
        results[name] = profile_step(model, optimizer, batch, amp, args.rows_shown,
                                     args.casts_shown)
    if len(results) < 2:
        return
    a, b = results["fp32"], results["bf16 autocast"]
    print(f"\nstep self CPU time, autocast / fp32: {b['step_self_ms'] / a['step_self_ms']:.2f}")


if __name__ == "__main__":
    main()
