"""DPO throughput: `lmlab dpo` vs TRL `DPOTrainer`, same model, pairs, batch and machine.

Both sides train DPO (sigmoid loss, beta 0.1) with LoRA r16 on all projections, the reference
being the same model with its adapters disabled (no second copy), fp32, micro-batch ``--batch``
pairs, no gradient checkpointing (``trl_ckpt`` adds TRL with its default, checkpointing on). Useful tokens/s = non-pad tokens of the chosen and rejected sequences per second of
optimizer steps, after ``--warmup`` steps; steps/s likewise. Padding waste = pad positions / all
positions of the (2B, T) batches each side builds.

    .venv/bin/python benchmarks/bench_dpo.py --steps 10 --warmup 2 --batch 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MODEL = "smollm2-135m-instruct"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def pairs(tasks: str, n: int) -> list[dict]:
    from lmlab.data.tasks import task_rows

    return [{k: r[k] for k in ("prompt", "chosen", "rejected")}
            for r in task_rows(tasks.split(","), "preference", "train", n=n, seed=0)]


def bench_lmlab(args, data_file: Path, out: Path, grouped: bool = True) -> dict:
    from lmlab.config import load_config
    from lmlab.stages import dpo

    cfg = load_config(dpo.Config, None, [
        f"model={args.model}", f"data={data_file}", f"output_dir={out}", "method=lora",
        "loss=dpo", "beta=0.1", f"max_steps={args.steps}", f"batch_size={args.batch}",
        f"max_len={args.max_len}", "eval_n=0", "kl_n=0", "task_eval_n=0", "progress=false",
        "save_every=0", "schedule=constant", "warmup_steps=0", "lr=5e-5", "lora_dropout=0.0",
        "merge_on_save=false", "overwrite=true", f"device={args.device}", "seed=0",
        f"group_by_length={str(grouped).lower()}", f"dtype={args.dtype}"])
    waste = padding_waste_lmlab(args, data_file, grouped)
    dpo.run(cfg)
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    timed = metrics[args.warmup:]
    seconds = sum(m["train/step_s"] for m in timed)
    return {"tokens_per_s": sum(m["train/tokens"] for m in timed) / seconds,
            "step_s": seconds / len(timed), "steps_per_s": len(timed) / seconds,
            "first_loss": metrics[0]["train/loss"], "final_loss": metrics[-1]["train/loss"],
            "padding_waste": waste}


def padding_waste_lmlab(args, data_file: Path, grouped: bool) -> float:
    """Pad share of the batches `lmlab dpo` builds over the steps it will run (counting the
    chosen / rejected halves padded apart when its objective splits them)."""
    from lmlab.data import encode_rows, load_rows
    from lmlab.losses.logprobs import collate_pairs, pair_parts
    from lmlab.models import load_tokenizer
    from lmlab.stages.dpo import example_length
    from lmlab.train.data import BatchStream

    tok = load_tokenizer(args.model)
    ex, _ = encode_rows(tok, load_rows(str(data_file), "preference"), "preference",
                        args.max_len, on_long="skip")
    stream = BatchStream(ex, args.batch, lambda e: collate_pairs(e, tok.pad_token_id), seed=0,
                         lengths=[example_length(e) for e in ex] if grouped else None)
    real = total = 0
    for _ in range(args.steps):
        for part in pair_parts(stream.next()):
            m = part["attention_mask"]
            real, total = real + int(m.sum()), total + m.numel()
    return 1 - real / total


def bench_trl(args, data: list[dict], out: Path, grad_ckpt: bool) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from lmlab.models import load_tokenizer
    from lmlab.models.load import model_folder
    from lmlab.models.registry import ALIASES

    folder = model_folder(ALIASES[args.model]) if args.model in ALIASES else args.model
    tok = load_tokenizer(args.model)
    tok.padding_side = "left"  # DPOTrainer asks for it (its collator right-pads itself)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}],
                             "chosen": [{"role": "assistant", "content": r["chosen"]}],
                             "rejected": [{"role": "assistant", "content": r["rejected"]}]}
                            for r in data])
    config = DPOConfig(
        output_dir=str(out), per_device_train_batch_size=args.batch, max_steps=args.steps,
        max_length=args.max_len, learning_rate=5e-5, lr_scheduler_type="constant",
        warmup_steps=0, logging_steps=1, save_strategy="no", report_to="none",
        bf16=args.dtype == "bf16", fp16=args.dtype == "fp16", use_cpu=args.device == "cpu",
        beta=0.1, loss_type=["sigmoid"],
        dataloader_num_workers=0, seed=0, gradient_checkpointing=grad_ckpt)
    peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                             target_modules=TARGETS)
    trainer = DPOTrainer(model=model, args=config, train_dataset=ds, processing_class=tok,
                         peft_config=peft_config)
    counts: list[tuple[int, int]] = []
    collate = trainer.data_collator

    def counting(batch):
        out_ = collate(batch)
        m = out_["attention_mask"]
        counts.append((int(m.sum()), m.numel()))
        return out_

    trainer.data_collator = counting
    times: list[float] = []
    losses: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t0)

        def on_log(self, _args, state, control, logs=None, **k):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    trainer.add_callback(Timer())
    trainer.train()
    step_counts = counts[:len(times)]  # the dataloader may prefetch past the last step
    w = args.warmup
    seconds = sum(times[w:])
    return {"tokens_per_s": sum(r for r, _ in step_counts[w:]) / seconds,
            "step_s": seconds / len(times[w:]), "steps_per_s": len(times[w:]) / seconds,
            "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None,
            "padding_waste": 1 - sum(r for r, _ in step_counts) / sum(t for _, t in step_counts)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=8, help="pairs per optimizer step")
    p.add_argument("--max-len", type=int, default=256)
    p.add_argument("--rows", type=int, default=200, help="pairs per task")
    p.add_argument("--tasks", default="add,sort", help="built-in tasks whose pairs are used")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--model", default=MODEL)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="lmlab: compute dtype (autocast on cuda); TRL: its bf16/fp16 flags")
    p.add_argument("--sides", nargs="+", default=["lmlab", "trl"],
                   choices=["lmlab", "lmlab_nogroup", "trl", "trl_ckpt"],
                   help="lmlab_nogroup: group_by_length=false; trl: gradient checkpointing off, "
                        "like lmlab; trl_ckpt: TRL's default (on)")
    p.add_argument("--out", default="benchmarks/results/dpo.json")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data = pairs(args.tasks, args.rows)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_file = Path(tmp) / "pairs.jsonl"
        data_file.write_text("".join(json.dumps(r) + "\n" for r in data))
        for side in ("lmlab", "lmlab_nogroup"):
            if side in args.sides:
                results[side] = bench_lmlab(args, data_file, Path(tmp) / side, side == "lmlab")
        for side in ("trl", "trl_ckpt"):
            if side in args.sides:
                results[side] = bench_trl(args, data, Path(tmp) / side, side == "trl_ckpt")
    if "lmlab" in results and "trl" in results:
        results["speedup_tokens"] = results["lmlab"]["tokens_per_s"] / results["trl"][
            "tokens_per_s"]
        results["speedup_steps"] = results["lmlab"]["steps_per_s"] / results["trl"]["steps_per_s"]
    env = {"python": sys.version.split()[0], "torch": torch.__version__,
           "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
           "cores": os.cpu_count(),
           "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "env": env, "results": results},
                                         indent=2) + "\n")
    print("| side | tokens/s | s/step | steps/s | padding waste | loss first -> last |")
    print("|---|---|---|---|---|---|")
    for side in ("lmlab", "lmlab_nogroup", "trl", "trl_ckpt"):
        if side in results:
            r = results[side]
            print(f"| {side} | {r['tokens_per_s']:.0f} | {r['step_s']:.2f} | "
                  f"{r['steps_per_s']:.3f} | {r['padding_waste']:.1%} | "
                  f"{r['first_loss']:.4f} -> {r['final_loss']:.4f} |")
    if "speedup_steps" in results:
        print(f"speed-up (steps/s): {results['speedup_steps']:.2f}x")


if __name__ == "__main__":
    main()
