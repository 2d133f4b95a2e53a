"""`lmlab distill`: knowledge distillation from a teacher into a smaller student.

Setup: the teacher (``model``), the data (built-in tasks, chat files, plain text, or a corpus
from a registry package; optionally with the teacher's own completions), the student (the
teacher pruned, a fresh small model with the teacher's embeddings, or any model with the same
tokenizer), and the teacher's logits (on the fly, or a top-k cache on disk). Then the shared
loop with the distillation objective. Then the final student and what it is worth: held-out
task accuracy of teacher and student, batch-1 greedy decode speed of both, and the student as
the draft model in speculative decoding of the teacher.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmlab.config import opt, row_fields
from lmlab.train.config import TrainConfig

HELP = "distil a teacher into a pruned / fresh / given student (KL, JSD, on-policy GKD)"


@dataclass
class Config(TrainConfig):
    model: str = opt("smollm2-135m-instruct", "the teacher: any model reference")
    student: str = opt("prune", "prune (cut the teacher down), fresh (a new model of the pruned "
                                "shape: teacher's embeddings, random blocks), or a model "
                                "reference sharing the teacher's tokenizer")
    prune_layers: int = opt(0, "prune/fresh: transformer blocks to keep (0 = all)", min=0)
    prune_heads: int = opt(0, "prune/fresh: query heads per block (a multiple of the key/value "
                              "heads; 0 = all)", min=0)
    prune_mlp: int = opt(0, "prune/fresh: MLP channels per block (0 = all)", min=0)
    prune_hidden: int = opt(0, "prune/fresh: hidden size (0 = all)", min=0)
    calib_n: int = opt(64, "prune/fresh: training examples used to score importance", min=1)
    loss: str = opt("forward_kl", "soft loss", choices=("forward_kl", "reverse_kl", "jsd"))
    temperature: float = opt(1.0, "softmax temperature of both models (loss scaled by T^2)",
                             min=0.0, min_exclusive=True)
    beta: float = opt(0.5, "jsd: mixture weight (0 = forward KL, 1 = reverse KL)", min=0, max=1)
    alpha_ce: float = opt(0.0, "weight of hard-label cross-entropy: (1-a) soft + a CE", min=0,
                          max=1)
    teacher_cache: str = opt("none", "teacher logits: none (teacher forward every step) | topk "
                                     "(computed once, stored in the run folder)",
                             choices=("none", "topk"))
    cache_k: int = opt(64, "topk: teacher entries kept per position", min=1)
    cache_dtype: str = opt("fp16", "topk: stored logit precision", choices=("fp16", "fp32"))
    on_policy: float = opt(0.0, "GKD lambda: fraction of micro-batches whose completions the "
                                "student samples (the teacher scores them)", min=0, max=1)
    gen_temperature: float = opt(1.0, "on_policy: student sampling temperature", min=0.0)
    gen_max_new_tokens: int = opt(32, "on_policy: tokens the student samples", min=1)
    completions: str = opt("data", "task/chat data: train on the data's answers, or on the "
                                    "teacher's greedy completions (sequence-level KD)",
                           choices=("data", "teacher"))
    teacher_max_new_tokens: int = opt(32, "completions=teacher: tokens per completion", min=1)
    data_kind: str = opt("auto", "auto (task:, corpus:, else chat or text by the first row)",
                         choices=("auto", "task", "chat", "text"))
    mapping: str | dict[str, str] = opt("", "data columns of a file: a preset (dolly | alpaca) "
                                        "or {field: column}, e.g. mapping.text=body",
                                        keys=row_fields("chat", "text"))
    data_limit: int | None = opt(None, "use at most this many training rows", min=1)
    corpus_chars: int = opt(1000, "corpus: characters per text row", min=50)
    eval_tasks: list[str] = opt([], "built-in tasks for held-out accuracy of teacher and student "
                                    "(default: the tasks in data)")
    eval_n: int = opt(50, "prompts per eval task and split (in-template, held-out template, "
                          "out-of-range)", min=0)
    eval_max_new_tokens: int = opt(16, "tokens generated per eval prompt", min=1)
    bench_prompts: int = opt(8, "prompts for the decode-speed and speculative measurements "
                                "(0 = skip)", min=0)
    bench_new_tokens: int = opt(32, "tokens per prompt in the speed measurements", min=1)
    num_draft_tokens: int = opt(4, "speculative: tokens the student drafts per step", min=1)

    def validate(self) -> list[str]:
        problems = []
        if self.teacher_cache == "topk" and self.loss != "forward_kl":
            problems.append("teacher_cache: topk supports loss=forward_kl only (reverse KL and "
                            "JSD need the teacher's whole distribution)")
        if self.teacher_cache == "topk" and self.on_policy > 0:
            problems.append("teacher_cache: topk cannot score on-policy samples; use none")
        pruned = (self.prune_layers, self.prune_heads, self.prune_mlp, self.prune_hidden)
        if self.student not in ("prune", "fresh") and any(pruned):
            problems.append("prune_*: only used with student=prune or student=fresh")
        return problems


def run(cfg: Config) -> dict:
    import torch

    from lmlab.common import is_main, print0, rank, world_size
    from lmlab.models import load_model, load_tokenizer
    from lmlab.models.prune import non_embedding_params
    from lmlab.stages.setup import start_stage
    from lmlab.train.data import BatchStream
    from lmlab.train.distill import DistillObjective, DistillParams, collate_distill
    from lmlab.train.distributed import barrier
    from lmlab.train.logging import build_loggers
    from lmlab.train.loop import train

    rows = _rows(cfg)  # a bad file fails before the run folder is touched
    ctx = start_stage(cfg, "distill")
    run_, device, dtype = ctx.run, ctx.device, ctx.dtype
    tokenizer = load_tokenizer(cfg.model)
    teacher = load_model(cfg.model, dtype=dtype, device=device, merge_adapter=True).eval()
    teacher.requires_grad_(False)

    examples, stats = _examples(cfg, rows, tokenizer, teacher, run_)
    student, student_info = _student(cfg, teacher, tokenizer, examples, device, dtype)
    sizes = {"teacher_params": sum(p.numel() for p in teacher.parameters()),
             "teacher_non_embedding": non_embedding_params(teacher),
             "student_params": sum(p.numel() for p in student.parameters()),
             "student_non_embedding": non_embedding_params(student)}
    sizes["non_embedding_ratio"] = round(sizes["teacher_non_embedding"] /
                                         sizes["student_non_embedding"], 3)
    print0(f"[lmlab] teacher {cfg.model}: {sizes['teacher_non_embedding'] / 1e6:.1f}M "
           f"non-embedding; student ({cfg.student}): {sizes['student_non_embedding'] / 1e6:.1f}M "
           f"({sizes['non_embedding_ratio']}x smaller)")
    cache_info = _attach_teacher_cache(cfg, teacher, tokenizer, examples, run_) \
        if cfg.teacher_cache == "topk" else None
    if cache_info:
        examples = cache_info.pop("examples")
    pad = tokenizer.pad_token_id
    stream = BatchStream(examples, cfg.batch_size, lambda ex: collate_distill(ex, pad),
                         seed=cfg.seed, rank=rank(), world=world_size())

    tasks = _eval_tasks(cfg)
    before = None
    if tasks and cfg.eval_n and is_main() and cfg.resume == "no":
        before = _accuracy(student, tokenizer, tasks, cfg)[0]
        print0(f"[lmlab] student accuracy before distillation: {_fmt(before)}")

    params = DistillParams(loss=cfg.loss, temperature=cfg.temperature, beta=cfg.beta,
                           alpha_ce=cfg.alpha_ce, on_policy=cfg.on_policy,
                           gen_temperature=cfg.gen_temperature,
                           gen_max_new_tokens=cfg.gen_max_new_tokens, seed=cfg.seed)
    objective = DistillObjective(teacher, params, student=student, tokenizer=tokenizer)
    loggers = build_loggers(cfg.loggers, str(run_.path), vars(cfg)) if is_main() else []
    result = train(student, objective, stream, cfg, run_, dtype=dtype, loggers=loggers,
                   eval_fn=(lambda m: _accuracy(m, tokenizer, tasks, cfg)[0])
                   if tasks and cfg.eval_n else None)
    for lg in loggers:
        lg.close()

    summary: dict = {"stage": "distill", "teacher": cfg.model, "student": cfg.student,
                     "loss": cfg.loss, "steps": result.step,
                     "train_seconds": round(result.seconds, 1), "data": stats, **sizes,
                     **student_info, "on_policy_batches": objective.rollouts}
    if cache_info:
        summary["teacher_cache"] = cache_info
    if result.metrics:
        summary["final_loss"] = result.metrics[-1]["train/loss"]
        summary["step_seconds"] = round(sum(m["train/step_s"] for m in result.metrics) /
                                        len(result.metrics), 3)
        summary["peak_rss_gb"] = result.metrics[-1].get("train/mem_gb")
    if is_main():
        _save_final(student, tokenizer, cfg, run_)
        student.eval()
        with torch.no_grad():
            summary.update(_measure(cfg, teacher, student, tokenizer, tasks, before, run_))
        run_.write_json("summary.json", summary)
        print0(f"[lmlab] wrote {run_.path}/ (final/, metrics.jsonl, summary.json)")
    barrier()
    return summary


# ----------------------------------------------------------------------------- data


def _kind(cfg: Config) -> str:
    import json
    from pathlib import Path

    if cfg.data_kind != "auto":
        return cfg.data_kind
    if cfg.data.startswith("task:"):
        return "task"
    if cfg.data.startswith("corpus:"):
        return "text"
    if isinstance(cfg.mapping, dict) and cfg.mapping:  # the columns are named: no need to peek
        return "text" if "text" in cfg.mapping else "chat"
    p = Path(cfg.data)
    if p.suffix == ".jsonl" and p.is_file():
        from lmlab.textfile import read_lines

        # through the shared reader: a BOM or CRLF reads as plain; bad bytes are named
        first = next((line for _, line in read_lines(p) if line.strip()), "{}")
        try:
            row = json.loads(first)
        except json.JSONDecodeError:
            return "chat"  # load_rows reports the bad line with its location
        return "text" if isinstance(row, dict) and "text" in row else "chat"
    return "chat"


def _rows(cfg: Config) -> list[dict]:
    from lmlab.data import load_rows

    if cfg.data.startswith("corpus:"):
        from lmlab.data.corpora import corpus_rows

        return corpus_rows(cfg.data, chars=cfg.corpus_chars, limit=cfg.data_limit)
    return load_rows(cfg.data, _kind(cfg), mapping=cfg.mapping or None, split="train",
                     limit=cfg.data_limit)


def _examples(cfg: Config, rows: list[dict], tokenizer, teacher, run_
              ) -> tuple[list[dict], dict]:
    from lmlab.common import print0
    from lmlab.data import encode_rows

    kind = _kind(cfg)
    if cfg.completions == "teacher":
        if kind == "text":
            from lmlab.errors import ConfigError

            raise ConfigError("completions=teacher needs prompts (task or chat data), not text")
        examples, stats = _teacher_examples(cfg, rows, kind, tokenizer, teacher, run_)
    else:
        examples, stats = encode_rows(tokenizer, rows, kind, cfg.max_len,
                                      on_long="truncate" if kind == "text" else "skip")
    stats = {**stats, "kind": kind, "completions": cfg.completions}
    print0(f"[lmlab] data: {stats['rows']} {kind} rows, {len(examples)} sequences, "
           f"{stats['trained_tokens']} trained tokens ({cfg.completions} completions)")
    return examples, stats


def _teacher_examples(cfg, rows, kind, tokenizer, teacher, run_) -> tuple[list[dict], dict]:
    """Prompt + the teacher's greedy completion, kept as token ids (the exact sequence the
    teacher wrote, EOS included when it stopped): labels on the completion only. Written to
    ``teacher_completions.jsonl`` once and read back on resume."""
    import json

    from lmlab.common import print0
    from lmlab.data.chat import IGNORE, encode_prompt
    from lmlab.infer.decode import generate
    from lmlab.infer.sampling import SamplingParams

    prompts = [[{"role": "user", "content": r["prompt"]}] if kind == "task"
               else _prompt_turns(r["messages"]) for r in rows]
    path = run_.path / "teacher_completions.jsonl"
    done = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] \
        if path.exists() else []
    if len(done) != len(rows):
        print0(f"[lmlab] teacher writes {len(prompts)} completions (greedy, "
               f"{cfg.teacher_max_new_tokens} tokens max) ...")
        params = SamplingParams(temperature=0.0, max_new_tokens=cfg.teacher_max_new_tokens)
        comps = generate(teacher, tokenizer, prompts, params, batch_size=16)
        done = [{"messages": p + [{"role": "assistant", "content": c.text}],
                 "completion_ids": c.token_ids, "finish_reason": c.finish_reason}
                for p, c in zip(prompts, comps)]
        run_.write_jsonl(path.name, done)
    examples, skipped = [], 0
    for p, d in zip(prompts, done):
        ids = encode_prompt(tokenizer, p)
        toks = d["completion_ids"] or [tokenizer.eos_token_id]
        if len(ids) + len(toks) > cfg.max_len:
            skipped += 1
            continue
        examples.append({"input_ids": ids + toks, "labels": [IGNORE] * len(ids) + toks})
    trained = sum(len(e["input_ids"]) - e["labels"].count(IGNORE) for e in examples)
    return examples, {"rows": len(rows), "skipped_long": skipped, "truncated": 0,
                      "tokens": sum(len(e["input_ids"]) for e in examples),
                      "trained_tokens": trained}


def _prompt_turns(messages: list[dict]) -> list[dict]:
    """A chat row's prompt: every turn before its last assistant reply."""
    return messages[:-1] if messages[-1]["role"] == "assistant" else messages


def _eval_tasks(cfg: Config) -> list[str]:
    from lmlab.stages.setup import eval_task_names

    return eval_task_names(cfg)


# ----------------------------------------------------------------------------- student


def _student(cfg: Config, teacher, tokenizer, examples, device, dtype) -> tuple[object, dict]:
    from lmlab.models import load_model, load_tokenizer

    if cfg.student not in ("prune", "fresh"):
        from lmlab.infer.speculative import check_same_vocab

        student = load_model(cfg.student, dtype=dtype, device=device, merge_adapter=True)
        check_same_vocab(teacher, student, tokenizer, load_tokenizer(cfg.student))
        return student.train(), {}
    from lmlab.data.collate import collate
    from lmlab.models.prune import PruneSpec, prune

    calib = examples[:cfg.calib_n]
    batches = [collate(calib[i:i + cfg.batch_size], tokenizer.pad_token_id)
               for i in range(0, len(calib), cfg.batch_size)]
    spec = PruneSpec(cfg.prune_layers, cfg.prune_heads, cfg.prune_mlp, cfg.prune_hidden)
    student, plan, imp = prune(teacher, spec, batches)
    if cfg.student == "fresh":
        _reinit_blocks(student, cfg.seed)
    student.requires_grad_(True)
    info = {"kept_layers": plan.layers,
            "layer_importance": [round(float(x), 4) for x in imp.layers],
            "student_shape": {k: getattr(student.config, k) for k in
                              ("num_hidden_layers", "num_attention_heads", "intermediate_size",
                               "hidden_size")}}
    return student.to(device=device, dtype=dtype).train(), info


def _reinit_blocks(model, seed: int) -> None:
    """Random transformer blocks (the config's init: N(0, initializer_range), norms at 1);
    embeddings and the final norm stay the teacher's."""
    import torch

    std = model.config.initializer_range
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for layer in model.model.layers:
            for name, p in layer.named_parameters():
                if name.endswith("layernorm.weight"):
                    p.fill_(1.0)
                elif p.dim() == 2:
                    p.normal_(0.0, std)
                else:
                    p.zero_()


def _attach_teacher_cache(cfg, teacher, tokenizer, examples, run_) -> dict:
    import torch

    from lmlab.common import print0
    from lmlab.train.distill import attach_cache, build_topk_cache, load_cache, save_cache

    path = run_.path / "teacher_topk.pt"
    dtype = torch.float16 if cfg.cache_dtype == "fp16" else torch.float32
    cache = None
    if path.exists():
        cache, stats = load_cache(path)
        if stats.get("k") != cfg.cache_k or len(cache) != len(examples):
            cache = None
        else:
            stats = {**stats, "reused": str(path)}
    if cache is None:
        cache, stats = build_topk_cache(teacher, examples, k=cfg.cache_k,
                                        pad_id=tokenizer.pad_token_id,
                                        batch_size=cfg.batch_size, dtype=dtype)
        save_cache(path, cache, stats)
    stats = {**stats, "file_mb": round(path.stat().st_size / 2**20, 2)}
    print0(f"[lmlab] teacher top-{cfg.cache_k} cache: {stats['positions']} positions, "
           f"{stats['file_mb']} MiB, built in {stats['seconds']} s"
           f"{' (reused)' if stats.get('reused') else ''}")
    return {**stats, "examples": attach_cache(examples, cache)}


# ----------------------------------------------------------------------------- save, measure


def _save_final(student, tokenizer, cfg, run_) -> None:
    from lmlab.models import base_reference, write_meta
    from lmlab.runs import commit_folder

    tmp = run_.path / ".final.tmp"
    student.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    write_meta(tmp, stage="distill", teacher=base_reference(cfg.model), student=cfg.student)
    commit_folder(tmp, run_.final)


def _accuracy(model, tokenizer, tasks, cfg) -> tuple[dict, list[dict], dict]:
    """(flat metrics, samples, measured flags) on the in-template, held-out-template and
    out-of-range prompts (lmlab.eval.tasks)."""
    from lmlab.eval.tasks import flat_metrics, measure

    res = measure(model, tokenizer, tasks, n=cfg.eval_n, max_new_tokens=cfg.eval_max_new_tokens)
    return flat_metrics(res["flags"]), res["samples"], res


def _fmt(metrics: dict) -> str:
    return ", ".join(f"{k.removeprefix('eval/')} {v:.0%}" for k, v in metrics.items()
                     if k.count("/") == 1)


def _bench_prompts(cfg, tasks) -> list:
    from lmlab.data.tasks import examples

    names = tasks or ["add"]
    per = -(-cfg.bench_prompts // len(names))
    rows = [r for n in names for r in examples(n, "test", per, seed=1)]
    return [[{"role": "user", "content": r["prompt"]}] for r in rows[:cfg.bench_prompts]]


def _measure(cfg, teacher, student, tokenizer, tasks, before, run_) -> dict:
    """Held-out accuracy (teacher, student), batch-1 greedy speed, speculative decoding."""
    from lmlab.eval.tasks import report_tasks

    out: dict = {}
    if tasks and cfg.eval_n:
        t_acc, _, t_res = _accuracy(teacher, tokenizer, tasks, cfg)
        s_acc, samples, s_res = _accuracy(student, tokenizer, tasks, cfg)
        out.update(teacher_accuracy=t_acc, student_accuracy=s_acc)
        # before = the teacher (the stage's input model), after = the student, same prompts
        out.update(report_tasks(t_res, s_res, seed=cfg.seed, what="teacher -> student"))
        if before is not None:
            out["student_accuracy_before"] = before
        if t_acc["eval/accuracy"] > 0:
            out["accuracy_kept"] = round(s_acc["eval/accuracy"] / t_acc["eval/accuracy"], 3)
        run_.write_jsonl("samples.jsonl", samples)
    if cfg.bench_prompts:
        out.update(_speed(cfg, teacher, student, tokenizer, _bench_prompts(cfg, tasks)))
    return out


def _speed(cfg, teacher, student, tokenizer, prompts) -> dict:
    import time

    from lmlab.common import print0
    from lmlab.infer.decode import generate
    from lmlab.infer.sampling import SamplingParams
    from lmlab.infer.speculative import generate_speculative

    fixed = SamplingParams(temperature=0.0, max_new_tokens=cfg.bench_new_tokens, ignore_eos=True)

    def tok_s(model) -> float:
        generate(model, tokenizer, prompts[:1], SamplingParams(temperature=0.0,
                                                               max_new_tokens=4), batch_size=1)
        t0 = time.perf_counter()
        comps = generate(model, tokenizer, prompts, fixed, batch_size=1)
        return sum(len(c.token_ids) for c in comps) / (time.perf_counter() - t0)

    s_speed, t_speed = tok_s(student), tok_s(teacher)
    greedy = SamplingParams(temperature=0.0, max_new_tokens=cfg.bench_new_tokens)
    t0 = time.perf_counter()
    plain = generate(teacher, tokenizer, prompts, greedy, batch_size=1)
    t_plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    spec = generate_speculative(teacher, tokenizer, prompts, greedy, draft=student,
                                draft_tokenizer=tokenizer, num_draft_tokens=cfg.num_draft_tokens)
    t_spec = time.perf_counter() - t0
    same = all(a.token_ids == b.token_ids for a, b in zip(plain, spec.completions))
    res = {"decode_tok_s": {"teacher": round(t_speed, 2), "student": round(s_speed, 2),
                            "speedup": round(s_speed / t_speed, 2)},
           "speculative": {**spec.stats.as_dict(), "num_draft_tokens": cfg.num_draft_tokens,
                           "plain_seconds": round(t_plain, 3), "spec_seconds": round(t_spec, 3),
                           "speedup": round(t_plain / t_spec, 3), "identical": same,
                           "prompts": len(prompts)}}
    print0(f"[lmlab] batch-1 greedy: teacher {t_speed:.1f} tok/s, student {s_speed:.1f} tok/s "
           f"({res['decode_tok_s']['speedup']}x); speculative (student drafts "
           f"{cfg.num_draft_tokens}): acceptance {spec.stats.acceptance_rate:.2f}, "
           f"{res['speculative']['speedup']}x, identical output: {same}")
    return res
