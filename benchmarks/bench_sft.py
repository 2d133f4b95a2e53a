"""SFT throughput: `lmlab sft` vs TRL `SFTTrainer`, same model, data, lengths and machine.

Useful tokens/s = non-pad input tokens processed per second of optimizer steps, after
``--warmup`` steps. Both sides train the same chat rows (built-in tasks) with completion-only
loss, micro-batch ``--batch``, fp32 on CPU, LoRA r16 on all projections or full fine-tuning.

    .venv/bin/python benchmarks/bench_sft.py --steps 12 --warmup 2 --modes lora full
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
TASKS = ["add", "sort"]


def rows(n: int) -> list[dict]:
    from lmlab.data.tasks import task_rows

    return task_rows(TASKS, "chat", "train", n=n, seed=0)


def bench_lmlab(mode: str, args, data_file: Path, out: Path, extra: tuple = ()) -> dict:
    """``mode``: any sft method; ``extra``: more overrides (the method's keys)."""
    from lmlab.config import load_config
    from lmlab.stages import sft

    cfg = load_config(sft.Config, None, [
        f"model={args.model}", f"data={data_file}", f"device={args.device}", f"dtype={args.dtype}", f"output_dir={out}", f"method={mode}",
        f"max_steps={args.steps}", f"batch_size={args.batch}", f"max_len={args.max_len}",
        "eval_n=0", "progress=false", "save_every=0", "schedule=constant", "warmup_steps=0",
        f"lr={2e-5 if mode == 'full' else 2e-4}", f"packing={str(args.packing).lower()}",
        "merge_on_save=false", "seed=0", "overwrite=true", *extra])
    sft.run(cfg)
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    timed = metrics[args.warmup:]
    return {"tokens_per_s": sum(m["train/tokens"] for m in timed) / sum(
        m["train/step_s"] for m in timed), "step_s": sum(m["train/step_s"] for m in timed) / len(
        timed), "final_loss": metrics[-1]["train/loss"]}


def lora_config(**kw):
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                      "up_proj", "down_proj"], **kw)


def bench_trl(mode: str, args, data: list[dict], out: Path, peft_config=None) -> dict:
    """``peft_config``: the tuner TRL wraps the model in (default: LoRA r16 for mode=lora,
    none for full)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from lmlab.models import load_tokenizer
    from lmlab.models.load import model_folder
    from lmlab.models.registry import ALIASES

    folder = model_folder(ALIASES[args.model]) if args.model in ALIASES else args.model
    tok = load_tokenizer(args.model)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    ds = Dataset.from_list([{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]}
                            for r in data])
    config = SFTConfig(
        output_dir=str(out), per_device_train_batch_size=args.batch, max_steps=args.steps,
        max_length=args.max_len, learning_rate=2e-5 if mode == "full" else 2e-4,
        lr_scheduler_type="constant", warmup_steps=0, logging_steps=1, save_strategy="no",
        report_to="none", bf16=args.dtype == "bf16", fp16=args.dtype == "fp16",
        use_cpu=args.device == "cpu", completion_only_loss=True,
        packing=args.packing, dataloader_num_workers=0, seed=0)
    if peft_config is None and mode == "lora":
        peft_config = lora_config()
    trainer = SFTTrainer(model=model, args=config, train_dataset=ds, processing_class=tok,
                         peft_config=peft_config)
    tokens: list[int] = []
    collate = trainer.data_collator

    def counting(batch):
        out_ = collate(batch)
        mask = out_.get("attention_mask")
        tokens.append(int(mask.sum()) if mask is not None else int(out_["input_ids"].numel()))
        return out_

    trainer.data_collator = counting
    trainer.train_dataloader = None
    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t0)

    trainer.add_callback(Timer())
    trainer.train()
    # the dataloader may prefetch one batch beyond the last step
    step_tokens = tokens[:len(times)]
    w = args.warmup
    return {"tokens_per_s": sum(step_tokens[w:]) / sum(times[w:]),
            "step_s": sum(times[w:]) / len(times[w:])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--rows", type=int, default=400)
    p.add_argument("--packing", action="store_true")
    p.add_argument("--modes", nargs="+", default=["lora", "full"], choices=["lora", "full"])
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--model", default=MODEL, help="model alias or folder (both sides)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="lmlab: compute dtype (autocast on cuda); TRL: its bf16/fp16 flags")
    p.add_argument("--out", default="benchmarks/results/sft.json")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data = rows(args.rows)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_file = Path(tmp) / "rows.jsonl"
        data_file.write_text("".join(json.dumps({"messages": r["messages"]}) + "\n"
                                     for r in data))
        for mode in args.modes:
            ours = bench_lmlab(mode, args, data_file, Path(tmp) / f"lmlab-{mode}")
            theirs = bench_trl(mode, args, data, Path(tmp) / f"trl-{mode}")
            results[mode] = {"lmlab": ours, "trl": theirs,
                             "speedup": ours["tokens_per_s"] / theirs["tokens_per_s"]}
    env = {"python": sys.version.split()[0], "torch": torch.__version__,
           "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
           "cores": os.cpu_count(),
           "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None}
    report = {"args": vars(args), "env": env, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print("| mode | lmlab tok/s | TRL tok/s | lmlab s/step | TRL s/step | speed-up |")
    print("|---|---|---|---|---|---|")
    for mode, r in results.items():
        print(f"| {mode} | {r['lmlab']['tokens_per_s']:.0f} | {r['trl']['tokens_per_s']:.0f} | "
              f"{r['lmlab']['step_s']:.2f} | {r['trl']['step_s']:.2f} | {r['speedup']:.2f}x |")


if __name__ == "__main__":
    main()
