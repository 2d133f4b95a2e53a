"""`lmlab sft`: supervised fine-tuning (full, LoRA, QLoRA, DoRA, IA3, prefix/prompt/P-tuning,
bottleneck adapters; models.methods), with completion-only loss.

Setup (model, data, held-out eval), then the shared loop with the LM objective, then the
final model, samples and summary.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmlab.config import opt, row_fields
from lmlab.models.methods import METHODS
from lmlab.train.config import CompileOptions, TrainConfig
from lmlab.train.recipes import RecipeOptions

HELP = "supervised fine-tuning (full, LoRA, DoRA, IA3, prompt/prefix, adapters) on chat / prompt-completion / task data"


@dataclass
class Config(RecipeOptions, CompileOptions, TrainConfig):
    method: str = opt("lora", "what to train: full | lora | qlora (LoRA on a frozen 4/8-bit "
                      "base) | dora | ia3 | prefix | prompt | ptuning | adapter (bottleneck); "
                      "docs/methods.md", choices=METHODS)
    qlora_bits: int = opt(4, "method=qlora: base weights as NF4 (4) or LLM.int8() (8)",
                          choices=(4, 8))
    lora_r: int = opt(16, "LoRA rank", min=1)
    lora_alpha: float = opt(32.0, "LoRA alpha (scale = alpha / r)", min=0.0, min_exclusive=True)
    lora_dropout: float = opt(0.05, "LoRA dropout", min=0.0, max=1.0)
    lora_targets: list[str] = opt([], "lora/qlora/dora: module names to adapt (default: all "
                                      "attention and MLP projections; 'all-linear' lets peft "
                                      "pick)")
    ia3_targets: list[str] = opt([], "ia3: linear layers whose output (or input, see "
                                     "ia3_feedforward) is scaled (default: peft's for the "
                                     "architecture; llama: k_proj, v_proj, down_proj)")
    ia3_feedforward: list[str] = opt([], "ia3: the ia3_targets scaled at their input (MLP "
                                         "layers; default with default targets: down_proj)")
    num_virtual_tokens: int = opt(20, "prefix/prompt/ptuning: virtual tokens", min=1)
    prefix_projection: bool = opt(False, "prefix: produce the prefix through a 2-layer MLP "
                                         "(more parameters, often steadier training)")
    ptuning_encoder: str = opt("mlp", "ptuning: the prompt encoder", choices=("mlp", "lstm"))
    ptuning_hidden: int = opt(0, "ptuning: encoder hidden size (0 = the model's width)", min=0)
    adapter_dim: int = opt(16, "adapter: bottleneck width r (down D->r, up r->D)", min=1)
    adapter_style: str = opt("houlsby", "adapter: houlsby = after attention and after MLP; "
                                        "pfeiffer = after MLP only",
                             choices=("houlsby", "pfeiffer"))
    adapter_act: str = opt("relu", "adapter: nonlinearity between down and up",
                           choices=("relu", "gelu", "silu", "tanh"))
    merge_on_save: bool | None = opt(None, "fold the update into the base weights so final/ is "
                                           "a plain transformers model (unset: yes for lora, "
                                           "dora, ia3; false: save the adapter alone)")
    mapping: str | dict[str, str] = opt("", "data columns: a preset (dolly | alpaca) or "
                                        "{field: column}, e.g. mapping.prompt=question "
                                        "mapping.completion=answer", keys=row_fields("chat"))
    data_limit: int | None = opt(None, "use at most this many training rows", min=1)
    on_error: str = opt("raise", "bad data rows", choices=("raise", "skip"))
    train_on: str = opt("assistant", "which tokens carry loss", choices=("assistant", "last", "all"))
    on_long: str = opt("skip", "rows longer than max_len", choices=("error", "skip", "truncate"))
    packing: bool = opt(False, "pack short examples into max_len rows (no cross-attention)")
    eval_tasks: list[str] = opt([], "built-in tasks for held-out accuracy before/after "
                                    "(default: the tasks in data when data is task:...)")
    eval_n: int = opt(50, "held-out prompts per eval task and split (in-template, held-out "
                          "template, out-of-range)", min=0)
    eval_splits: list[str] = opt(["test", "heldout", "range"],
                                 "task eval prompts: test (in-template), heldout (phrasings never "
                                 "trained on), range (larger numbers, longer lists)")
    eval_max_new_tokens: int = opt(16, "tokens generated per eval prompt", min=1)
    eval_cache: str = opt("", "folder caching the before-training task eval per (weights, "
                              "method, dtype, eval settings), so runs that start from the same "
                              "weights measure them once; 'auto' = <output_dir>/../eval-cache; "
                              "empty = off")

    def validate(self) -> list[str]:
        from lmlab.eval.tasks import split_problems
        from lmlab.models.methods import problems as method_problems
        from lmlab.models.methods import spec_from
        from lmlab.train import recipes

        problems = split_problems(self.eval_splits) + recipes.problems(self)
        problems += method_problems(
            spec_from(self), merge_on_save=self.merge_on_save, packing=self.packing,
            activation_checkpointing=self.activation_checkpointing, strategy=self.strategy)
        return problems


def run(cfg: Config) -> dict:
    from lmlab.common import is_main, print0, rank, world_size
    from lmlab.data import collate, encode_rows, load_rows, pack
    from lmlab.eval.tasks import (
        accuracy_lines,
        flat_metrics,
        report_tasks,
        task_summary,
    )
    from lmlab.eval.tasks import measure as measure_tasks
    from lmlab.losses.objectives import LMObjective
    from lmlab.models import base_reference, load_model, load_tokenizer, write_meta
    from lmlab.models.adapters import count_parameters
    from lmlab.models.compiling import compiled_for_training
    from lmlab.models.methods import apply_method, spec_from
    from lmlab.stages.setup import eval_cot, eval_task_names, start_stage
    from lmlab.train import recipes
    from lmlab.train.data import BatchStream
    from lmlab.train.distributed import barrier
    from lmlab.train.logging import build_loggers
    from lmlab.train.loop import train

    # --- data: read before the run folder is touched, so a bad file loses nothing
    sources = recipes.load_sources(cfg)  # curriculum / mixture / replay: rows per source
    rows = sources.rows if sources else load_rows(
        cfg.data, "chat", mapping=cfg.mapping or None, split="train", limit=cfg.data_limit,
        on_error=cfg.on_error)
    ctx = start_stage(cfg, "sft")
    run_, device, dtype = ctx.run, ctx.device, ctx.dtype
    tokenizer = load_tokenizer(cfg.model)
    examples, stats = encode_rows(tokenizer, rows, "chat", cfg.max_len, on_long=cfg.on_long,
                                  train_on=cfg.train_on)
    if cfg.packing:
        examples = pack(examples, cfg.max_len)
    print0(f"[lmlab] data: {stats['rows']} rows, {len(examples)} sequences, "
           f"{stats['trained_tokens']} trained tokens, {stats['skipped_long']} skipped as longer "
           f"than max_len={cfg.max_len}")

    # --- model
    if cfg.method == "qlora":
        from lmlab.quant.qlora import load_qlora_base

        model = load_qlora_base(cfg.model, cfg.qlora_bits, device)
    else:
        model = load_model(cfg.model, dtype=ctx.weights_dtype, device=device)
    model = apply_method(model, spec_from(cfg))
    trainable, total = count_parameters(model)
    print0(f"[lmlab] model {cfg.model}: {total / 1e6:.1f}M parameters, "
           f"{trainable / 1e6:.2f}M trainable ({cfg.method}), {dtype}, {device}")

    def collate_fn(ex: list) -> dict:
        return collate(ex, tokenizer.pad_token_id)

    recipe = None
    if sources:
        stream, recipe = recipes.build_stream(sources, cfg, tokenizer, model, run_, collate_fn,
                                              rank=rank(), world=world_size())
    else:
        stream = BatchStream(examples, cfg.batch_size, collate_fn, seed=cfg.seed, rank=rank(),
                             world=world_size())
    tasks = eval_task_names(cfg)

    def evaluate(m) -> tuple[dict, dict]:
        res = measure_tasks(m, tokenizer, tasks, n=cfg.eval_n,
                            max_new_tokens=cfg.eval_max_new_tokens, splits=cfg.eval_splits,
                            cot=eval_cot(cfg))
        return flat_metrics(res["flags"]), res

    before = after = before_res = None
    if tasks and cfg.eval_n and is_main() and cfg.resume == "no":
        before_res = _before_eval(cfg, tasks, dtype, lambda: evaluate(model)[1])
        before = flat_metrics(before_res["flags"])
        print0("[lmlab] task accuracy before (greedy; 95% bootstrap CI):")
        for line in accuracy_lines(task_summary(None, before_res)["task_eval_after"]):
            print0("[lmlab] " + line)

    loggers = build_loggers(cfg.loggers, str(run_.path), vars(cfg)) if is_main() else []
    objective = recipes.objective(cfg, model, LMObjective())  # + an EWC / L2 pull if asked
    with compiled_for_training(model, cfg):  # the evals and save after it run eagerly
        result = train(model, objective, stream, cfg, run_, dtype=dtype, loggers=loggers,
                       eval_fn=(lambda m: evaluate(m)[0]) if tasks and cfg.eval_n else None)
    for lg in loggers:
        lg.close()

    # --- save and measure
    summary: dict = {"stage": "sft", "model": cfg.model, "method": cfg.method,
                     "steps": result.step, "train_seconds": round(result.seconds, 1),
                     "trainable_params": trainable, "total_params": total, "data": stats}
    if result.metrics:
        summary["final_loss"] = result.metrics[-1]["train/loss"]
        summary["tokens_per_s"] = sum(m["train/tokens"] for m in result.metrics) / max(
            1e-9, sum(m["train/step_s"] for m in result.metrics))
    if is_main():
        _save_final(model, tokenizer, cfg, run_, base_reference, write_meta)
        if tasks and cfg.eval_n:
            after, after_res = evaluate(model)
            summary["eval_after"] = after
            summary.update(report_tasks(before_res, after_res, seed=cfg.seed))
            if before is not None:
                summary["eval_before"] = before
                _print_samples(before_res["samples"], after_res["samples"])
            run_.write_jsonl("samples.jsonl", after_res["samples"])
        recipes.after_training(cfg, model, examples, collate_fn, run_, summary, recipe)
        run_.write_json("summary.json", summary)
        print0(f"[lmlab] wrote {run_.path}/ (final/, metrics.jsonl, summary.json)")
    barrier()
    return summary


# methods whose model at step 0 computes exactly what the loaded weights do (zero-init LoRA /
# DoRA / adapter up-projection, IA3 scales of one): their before-eval is the weights' eval
UNCHANGED_AT_START = ("full", "lora", "dora", "ia3", "adapter")


def _before_eval(cfg, tasks: list[str], dtype, measure) -> dict:
    """``measure()`` (the before-training eval), or its cached result when ``eval_cache`` is on
    and a run with the same weights, method, dtype and eval settings measured it before. Only
    for methods that leave the model unchanged at step 0 (prompt/prefix start random)."""
    from pathlib import Path

    from lmlab.common import print0
    from lmlab.eval.cache import Cache, fingerprint, key
    from lmlab.stages.setup import eval_cot

    folder = cfg.eval_cache
    if not folder or cfg.method not in UNCHANGED_AT_START:
        return measure()
    if folder == "auto":
        folder = Path(cfg.output_dir).resolve().parent / "eval-cache"
    cache = Cache(folder)
    k = key(what="sft-before-eval", v=1, model=fingerprint(cfg.model), method=cfg.method,
            dtype=str(dtype), device=cfg.device, seed=cfg.seed, tasks=list(tasks), n=cfg.eval_n,
            splits=list(cfg.eval_splits), max_new_tokens=cfg.eval_max_new_tokens,
            cot=bool(eval_cot(cfg)))
    got = cache.get(k)
    if got is not None:
        print0(f"[lmlab] before-training eval: cached ({Path(folder) / (k + '.json')})")
        return got
    res = measure()
    cache.put(k, res)
    return res


def _save_final(model, tokenizer, cfg, run_, base_reference, write_meta) -> None:
    from lmlab.models.methods import can_merge, save_method
    from lmlab.runs import commit_folder, temp_folder

    tmp = temp_folder(run_.path)
    # a QLoRA adapter is saved alone: merging into 4-bit weights would round it away
    merge = can_merge(cfg.method) if cfg.merge_on_save is None else cfg.merge_on_save
    merged = save_method(model, tmp, cfg.method, merge)
    tokenizer.save_pretrained(tmp)
    meta = {"stage": "sft", "method": cfg.method, "merged": merged}
    if not merged:
        meta["base"] = base_reference(cfg.model)
    write_meta(tmp, **meta)
    commit_folder(tmp, run_.final)


def _print_samples(before: list[dict], after: list[dict], k: int = 6) -> None:
    """A few evaluation prompts, before vs after: one per (task, split) first, fixed ones
    preferred."""
    from lmlab.common import print0

    pairs = list(zip(before, after))
    pairs.sort(key=lambda p: (p[1]["correct"] and not p[0]["correct"]), reverse=True)
    chosen, seen = [], set()
    for p in pairs:  # one per task and split, then fill up
        if (p[0].get("task"), p[0].get("split")) not in seen:
            chosen.append(p)
            seen.add((p[0].get("task"), p[0].get("split")))
    chosen += [p for p in pairs if p not in chosen][:max(0, k - len(chosen))]
    for b, a in chosen[:k]:
        print0(f"  [{b.get('split', 'test')}] prompt: {b['prompt']!r}  (answer {b['answer']!r})")
        print0(f"    before: {b['completion'].strip()!r} {'ok' if b['correct'] else 'wrong'}")
        print0(f"    after:  {a['completion'].strip()!r} {'ok' if a['correct'] else 'wrong'}")
