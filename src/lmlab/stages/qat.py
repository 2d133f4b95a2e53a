"""`lmlab qat`: quantization-aware fine-tuning (torchao fake quantization) on SFT data.

Setup as SFT (chat / task rows, completion-only loss), then ``quant.qat.prepare`` (fake-quant
linears), the shared loop with the LM objective (every weight trains), ``quant.qat.convert``
to a real int4 model in ``final/``. ``summary.json`` compares it with post-training
quantization at the same scheme of ``ptq_of`` (default: the starting model; give the fp32
SFT run trained on the same data for the fair comparison) and that model in fp32:
``recovered`` = (QAT - PTQ) / (fp32 - PTQ) accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmlab.config import opt, row_fields
from lmlab.quant.qat import SCHEMES
from lmlab.train.config import TrainConfig

HELP = "quantization-aware fine-tuning (torchao fake-quant, int4) and the QAT vs PTQ comparison"


@dataclass
class Config(TrainConfig):
    data: str = opt("task:convert,compare", "training data, as for sft")
    lr: float = opt(2e-5, "peak learning rate (full fine-tuning)", min=0.0, min_exclusive=True)
    scheme: str = opt("int8-dynamic-int4", "target quantization", choices=SCHEMES)
    group_size: int = opt(32, "int4 weights sharing one scale", choices=(32, 64, 128, 256))
    embeddings: bool = opt(True, "store the embedding table as int8 after convert (as PTQ)")
    mapping: str | dict[str, str] = opt("", "data columns: a preset (dolly | alpaca) or "
                                        "{field: column}, e.g. mapping.prompt=question "
                                        "mapping.completion=answer", keys=row_fields("chat"))
    data_limit: int | None = opt(None, "use at most this many training rows", min=1)
    train_on: str = opt("assistant", "which tokens carry loss", choices=("assistant", "last", "all"))
    on_long: str = opt("skip", "rows longer than max_len", choices=("error", "skip", "truncate"))
    ptq_of: str = opt("", "model to post-training-quantize for the comparison (default: model)")
    compare: bool = opt(True, "measure PTQ and fp32 of ptq_of next to the QAT model")
    eval_tasks: list[str] = opt([], "tasks for accuracy (default: the tasks in data)")
    eval_n: int = opt(50, "held-out prompts per task (0 = skip accuracy)", min=0)
    eval_max_new_tokens: int = opt(16, "tokens generated per eval prompt", min=1)
    ppl_text: str = opt("shakespeare", "held-out text for perplexity (shakespeare | FILE.txt | "
                                       "empty)")
    ppl_windows: int = opt(8, "256-token windows scored for perplexity", min=0)
    decode_tokens: int = opt(32, "batch-1 greedy tokens timed (0 = skip)", min=0)

    def validate(self) -> list[str]:
        return ["dtype: QAT runs in fp32 here (fake quantization of bf16/fp16 weights is not "
                "supported)"] if self.dtype not in ("auto", "fp32") else []


def run(cfg: Config) -> dict:
    import torch

    from lmlab.common import print0
    from lmlab.data import collate, encode_rows, load_rows
    from lmlab.losses.objectives import LMObjective
    from lmlab.models import load_model, load_tokenizer, resolve
    from lmlab.quant import qat
    from lmlab.quant.export import save_quantized
    from lmlab.quant.ptq import Recipe, quantize_model
    from lmlab.runs import commit_folder, temp_folder
    from lmlab.stages.setup import eval_task_names, start_stage
    from lmlab.train.data import BatchStream
    from lmlab.train.loop import train

    if cfg.ptq_of:
        resolve(cfg.ptq_of)
    recipe = Recipe(cfg.scheme, cfg.group_size, cfg.embeddings)
    rows = load_rows(cfg.data, "chat", mapping=cfg.mapping or None, split="train",
                     limit=cfg.data_limit)  # before any write
    ctx = start_stage(cfg, "qat")
    run_ = ctx.run
    tokenizer = load_tokenizer(cfg.model)
    examples, stats = encode_rows(tokenizer, rows, "chat", cfg.max_len, on_long=cfg.on_long,
                                  train_on=cfg.train_on)
    stream = BatchStream(examples, cfg.batch_size, lambda ex: collate(ex, tokenizer.pad_token_id),
                         seed=cfg.seed)
    model = qat.prepare(load_model(cfg.model, dtype=torch.float32, device=ctx.device), recipe)
    print0(f"[lmlab] qat: {stats['rows']} rows, fake-quant {cfg.scheme} (group {cfg.group_size})"
           f" on every decoder linear; full fine-tuning")
    result = train(model, LMObjective(), stream, cfg, run_, dtype=torch.float32)

    model = qat.convert(model.cpu(), recipe)
    tmp = temp_folder(run_.path)
    save_quantized(model, tokenizer, tmp, recipe, stage="qat", base=cfg.model)
    commit_folder(tmp, run_.final)

    summary: dict = {"stage": "qat", "model": cfg.model, **recipe.as_dict(),
                     "steps": result.step, "train_seconds": round(result.seconds, 1),
                     "data": stats}
    if result.metrics:
        summary["final_loss"] = result.metrics[-1]["train/loss"]
    measure = _measurer(cfg, tokenizer, eval_task_names(cfg))
    summary["qat"], samples = measure(model, f"QAT {cfg.scheme}")
    if cfg.compare:
        ref = cfg.ptq_of or cfg.model
        fp32 = load_model(ref, dtype=torch.float32).eval()
        summary["fp32"] = measure(fp32, f"fp32 {ref}")[0]
        summary["ptq"] = measure(quantize_model(fp32, recipe), f"PTQ {cfg.scheme} of {ref}")[0]
        summary["ptq_of"] = ref
        summary.update(_recovered(summary))
    run_.write_jsonl("samples.jsonl", samples)
    run_.write_json("summary.json", summary)
    print0(f"[lmlab] wrote {run_.path}/ (final/, metrics.jsonl, summary.json)")
    return summary


def _measurer(cfg: Config, tokenizer, tasks: list[str]):
    from lmlab.common import print0
    from lmlab.quant.measure import measure_all
    from lmlab.stages.quantize import _fmt

    def measure(model, label: str):
        print0(f"[lmlab] measuring {label} ...")
        out = measure_all(model, tokenizer, tasks=tasks, eval_n=cfg.eval_n,
                          max_new_tokens=cfg.eval_max_new_tokens, ppl_text=cfg.ppl_text,
                          ppl_windows=cfg.ppl_windows, decode_tokens=cfg.decode_tokens)
        print0(f"[lmlab] {label}: {_fmt(out[0])}")
        return out
    return measure


def _recovered(s: dict) -> dict:
    """Share of PTQ's loss that QAT wins back, per metric (None when PTQ lost nothing)."""
    out = {}
    for key, higher_better in (("accuracy", True), ("perplexity", False)):
        if key not in s["qat"]:
            continue
        fp, ptq, q = s["fp32"][key], s["ptq"][key], s["qat"][key]
        lost = (fp - ptq) if higher_better else (ptq - fp)
        won = (q - ptq) if higher_better else (ptq - q)
        out[f"recovered_{key}"] = won / lost if lost > 0 else None
    return out
