"""Online-RL speed: `lmlab grpo` vs TRL `GRPOTrainer`, same model, prompts, group size and
completion length, in one run.

Sides (``--sides``, default both):

- ``lmlab``: (a) rollout tokens/s of our batched KV-cache decode loop vs recomputing the whole
  prefix at every token, the scoring pass (policy + reference) and one GRPO minibatch step, each
  the best of ``--repeats``; (b) the full ``lmlab grpo`` stage (rollout + rewards + loss + AdamW
  step) for ``--steps`` updates of ``--prompts`` x ``--k`` completions, one optimizer step per
  update (batch_size = prompts x k, so the stage skips the separate scoring pass) and
  ``log_kl=false`` (no reference forward at beta 0, like TRL).
- ``trl``: ``GRPOTrainer`` with the same shapes: num_generations = k,
  per_device_train_batch_size = prompts x k (so one optimizer step = one generation batch),
  max_completion_length = ``--new-tokens``, transformers ``generate`` (no vLLM), fp32 (TRL's
  bf16 default off), gradient checkpointing off (TRL's default is on), beta 0 (no reference),
  loss_type grpo (per-sequence mean, like ours), no eval, nothing logged or saved.

Both sides: LoRA r16 alpha 32 (no dropout) on the attention and MLP projections, lr 1e-5
constant, temperature 1, the built-in task's checker as the reward, and every completion exactly
``--new-tokens`` long (EOS ignored here, ``min_new_tokens`` there). Seconds per optimizer step:
median and min after ``--warmup`` steps; rollout tokens/s: generated tokens over the time spent
inside the generate call (our ``sample``, TRL's ``model.generate``) in the same steps.

    .venv/bin/python benchmarks/bench_rl.py                  # smollm2-135m-instruct, 2 x 4 x 32
    .venv/bin/python benchmarks/bench_rl.py --model tiny:llama --steps 3 --warmup 1 --threads 1

The default shapes are those of the TRL figure in issue 4 (2 prompts x 4 completions x 32 tokens).
JSON goes to ``--out`` except for ``tiny:`` models (a smoke run, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MODEL = "smollm2-135m-instruct"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LR = 1e-5


# --- helpers --------------------------------------------------------------------------------------


def best(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


@contextmanager
def patched(owner, name: str, wrap):
    """Replace ``owner.name`` by ``wrap(original)`` for the duration of the block."""
    orig = getattr(owner, name)
    setattr(owner, name, wrap(orig))
    try:
        yield
    finally:
        setattr(owner, name, orig)


def timed(fn, calls: list[tuple[float, int]], count_tokens):
    """``fn`` that appends (seconds, generated tokens) to ``calls`` on every call."""
    def wrapper(*a, **k):
        t0 = time.perf_counter()
        out = fn(*a, **k)
        calls.append((time.perf_counter() - t0, count_tokens(out, *a, **k)))
        return out
    return wrapper


def step_summary(step_s: list[float], gen: list[tuple[float, int]], warmup: int) -> dict:
    """Seconds per optimizer step and rollout tokens/s over the steps after ``warmup``
    (``gen`` holds one generate call per step)."""
    s = step_s[warmup:]
    out = {"steps_timed": len(s), "step_s_median": statistics.median(s), "step_s_min": min(s),
           "steps_per_s": 1 / statistics.median(s)}
    if len(gen) == len(step_s):
        g = gen[warmup:]
        secs, toks = sum(t for t, _ in g), sum(n for _, n in g)
        out.update({"rollout_s_median": statistics.median(t for t, _ in g),
                    "rollout_tokens": toks // len(g), "rollout_tok_per_s": toks / secs,
                    "rollout_share": secs / sum(s)})
    else:
        out["rollout_note"] = f"not separable: {len(gen)} generate calls for {len(step_s)} steps"
    return out


def task_data(args) -> list[dict]:
    """{prompt, answer, task} rows of the built-in task: one prompt per update and side."""
    from lmlab.data.tasks import task_rows

    return task_rows([args.task], "task", "train", n=args.prompts * args.steps, seed=0)


# --- lmlab: decode loop and single pieces ---------------------------------------------------------


@torch.no_grad()
def recompute_sample(model, prompts: list[list[int]], k: int, n: int, pad: int,
                     g: torch.Generator) -> list[list[int]]:
    """The no-cache baseline: one full forward over prompt + everything so far per token."""
    from lmlab.infer.decode import left_pad

    ids, mask = left_pad([p for p in prompts for _ in range(k)], pad)
    for _ in range(n):
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos,
                       use_cache=False, logits_to_keep=1).logits[:, -1].float()
        nxt = torch.multinomial(logits.softmax(-1), 1, generator=g)
        ids = torch.cat([ids, nxt], 1)
        mask = torch.cat([mask, torch.ones_like(nxt)], 1)
    return ids[:, -n:].tolist()


def bench_pieces(args, rows: list[dict]) -> dict:
    """KV-cache decode vs recompute, the scoring pass and one GRPO minibatch step."""
    from types import SimpleNamespace

    from lmlab.data import encode_prompt
    from lmlab.infer.sampling import SamplingParams
    from lmlab.models import load_model, load_tokenizer
    from lmlab.models.adapters import add_lora
    from lmlab.rl.rollout import Rollout, sample, score
    from lmlab.rl.value import ActorCritic
    from lmlab.stages import grpo
    from lmlab.train.loop import build_optimizer

    tok = load_tokenizer(args.model)
    model = add_lora(load_model(args.model), r=16, alpha=32, dropout=0.0, targets=TARGETS)
    prompts = [encode_prompt(tok, r["prompt"]) for r in rows[:args.prompts]]
    params = SamplingParams(max_new_tokens=args.new_tokens, ignore_eos=True)
    pad, n_tok = tok.pad_token_id, args.prompts * args.k * args.new_tokens
    g = torch.Generator().manual_seed(0)
    t_kv, (resp, finish) = best(lambda: sample(model, prompts, args.k, params, generator=g,
                                               pad_id=pad, eos_ids=[]), args.repeats)
    model.eval()
    t_re, _ = best(lambda: recompute_sample(model, prompts, args.k, args.new_tokens, pad, g),
                   args.repeats)
    cfg = grpo.Config(model=args.model, group_size=args.k, batch_size=args.prompts * args.k,
                      lr=LR)
    ac = ActorCritic(model)
    on = SimpleNamespace(cfg=cfg, model=ac, optimizer=build_optimizer(ac, cfg), run=None)
    ro = Rollout([{}] * len(resp), [p for p in prompts for _ in range(args.k)], resp, finish)
    t_score, _ = best(lambda: score(ro, model, pad_id=pad), args.repeats)
    adv = torch.randn(len(resp))
    t_step, _ = best(lambda: grpo.update(on, ro, adv, 0), args.repeats)
    return {"rollout_kv_s": t_kv, "rollout_kv_tok_per_s": n_tok / t_kv,
            "rollout_recompute_s": t_re, "rollout_recompute_tok_per_s": n_tok / t_re,
            "kv_speedup": t_re / t_kv, "score_s": t_score, "update_step_s": t_step}


# --- lmlab: the full stage ------------------------------------------------------------------------


def bench_lmlab(args, rows: list[dict], tmp: Path) -> dict:
    """``lmlab grpo`` for ``--steps`` updates; per-update seconds from its metrics.jsonl."""
    from lmlab.config import load_config
    from lmlab.rl import online, rollout
    from lmlab.stages import grpo

    data = tmp / "prompts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp / "lmlab"
    cfg = load_config(grpo.Config, None, [
        f"model={args.model}", f"data={data}", f"output_dir={out}", "overwrite=true", "seed=0",
        "method=lora", "lora_r=16", "lora_alpha=32", f"lora_targets=[{','.join(TARGETS)}]",
        f"prompts_per_update={args.prompts}", f"group_size={args.k}",
        f"max_new_tokens={args.new_tokens}", f"batch_size={args.prompts * args.k}", "epochs=1",
        f"max_steps={args.steps}", f"lr={LR}", "schedule=constant", "warmup_steps=0",
        "rewards=[task]", "beta=0.0", "log_kl=false", "temperature=1.0", "task_eval_n=0",
        "keep_rollouts=false", "save_every=0", "merge_on_save=false", "progress=false",
        "dtype=fp32", "device=cpu"])
    gen: list[tuple[float, int]] = []

    def no_eos(collect):  # every completion exactly max_new_tokens long, like the TRL side
        def wrapper(on, batch, **kw):
            on.eos = []
            return collect(on, batch, **kw)
        return wrapper

    with patched(online, "collect", no_eos), patched(
            rollout, "sample", lambda f: timed(f, gen, lambda o, *a, **k: sum(map(len, o[0])))):
        grpo.run(cfg)
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    res = step_summary([m["train/update_s"] for m in metrics], gen, args.warmup)
    res["reward_mean"] = statistics.mean(m["train/reward/mean"] for m in metrics)
    return res


# --- TRL ------------------------------------------------------------------------------------------


def trl_reward(completions, task, answer, **_) -> list[float]:
    """Our ``task`` reward: the built-in task's checker on the reply text."""
    from lmlab.data.tasks import get_task

    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [float(get_task(t).reward(x, a)) for x, t, a in zip(texts, task, answer)]


def bench_trl(args, rows: list[dict], tmp: Path) -> dict:
    """``GRPOTrainer`` for ``--steps`` optimizer steps, timed by a callback; generation timed
    by wrapping the policy's ``generate``."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from lmlab.models import load_model, load_tokenizer

    tok = load_tokenizer(args.model)
    tok.padding_side = "left"
    model = load_model(args.model, dtype=torch.float32)
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}],
                             "answer": r["answer"], "task": r["task"]} for r in rows])
    n = args.prompts * args.k
    config = GRPOConfig(
        output_dir=str(tmp / "trl"), max_steps=args.steps, per_device_train_batch_size=n,
        gradient_accumulation_steps=1, num_generations=args.k,
        max_completion_length=args.new_tokens, temperature=1.0, beta=0.0, epsilon=0.2,
        loss_type="grpo", scale_rewards="group", num_iterations=1, learning_rate=LR,
        lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=1.0, weight_decay=0.0,
        generation_kwargs={"min_new_tokens": args.new_tokens}, bf16=False, fp16=False,
        use_cpu=True, activation_checkpointing=False, use_vllm=False, logging_strategy="no",
        save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True,
        dataloader_num_workers=0, seed=0)
    peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                             target_modules=TARGETS)
    trainer = GRPOTrainer(model=model, reward_funcs=trl_reward, args=config, train_dataset=ds,
                          processing_class=tok, peft_config=peft_config)
    times: list[float] = []
    gen: list[tuple[float, int]] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t0)

    def new_tokens(out, *a, **k):
        return out.shape[0] * (out.shape[1] - k["input_ids"].shape[1])

    trainer.add_callback(Timer())
    policy = trainer.model  # the PeftModel that unwrap_model_for_generation hands back on CPU
    policy.generate = timed(policy.generate, gen, new_tokens)
    trainer.train()
    return step_summary(times, gen, args.warmup)


# --- report ---------------------------------------------------------------------------------------


def ratios(results: dict) -> dict:
    ours, theirs = results.get("lmlab"), results.get("trl")
    if not (ours and theirs):
        return {}
    out = {"steps_per_s": ours["steps_per_s"] / theirs["steps_per_s"]}
    if "rollout_tok_per_s" in ours and "rollout_tok_per_s" in theirs:
        out["rollout_tok_per_s"] = ours["rollout_tok_per_s"] / theirs["rollout_tok_per_s"]
    return out


def table(results: dict, ratio: dict) -> str:
    def f(r, key, fmt):
        return format(r[key], fmt) if key in r else "n/a"

    lines = ["| side | s/step median | s/step min | steps/s | rollout tok/s | rollout share |",
             "|---|---|---|---|---|---|"]
    for side in ("lmlab", "trl"):
        if side in results:
            r = results[side]
            lines.append(f"| {side} | {r['step_s_median']:.2f} | {r['step_s_min']:.2f} | "
                         f"{r['steps_per_s']:.3f} | {f(r, 'rollout_tok_per_s', '.1f')} | "
                         f"{f(r, 'rollout_share', '.0%')} |")
    if ratio:
        lines.append(f"| lmlab / trl | | | {ratio['steps_per_s']:.2f}x (target 1.5x) | "
                     f"{f(ratio, 'rollout_tok_per_s', '.2f')}x (target 2x) | |")
    p = results.get("pieces")
    if p:
        lines.append("")
        lines.append(f"lmlab pieces (best of repeats): KV-cache decode "
                     f"{p['rollout_kv_tok_per_s']:.1f} tok/s vs recompute "
                     f"{p['rollout_recompute_tok_per_s']:.1f} tok/s ({p['kv_speedup']:.2f}x); "
                     f"scoring {p['score_s']:.2f} s; one GRPO minibatch step "
                     f"{p['update_step_s']:.2f} s")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=MODEL)
    p.add_argument("--task", default="compare", help="built-in task giving prompts and reward")
    p.add_argument("--prompts", type=int, default=2, help="prompts per optimizer step")
    p.add_argument("--k", type=int, default=4, help="completions per prompt (group size)")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens per completion")
    p.add_argument("--steps", type=int, default=6, help="optimizer steps per side")
    p.add_argument("--warmup", type=int, default=1, help="first steps left out of the timing")
    p.add_argument("--repeats", type=int, default=3, help="repeats of each lmlab piece")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--sides", nargs="+", default=["lmlab", "trl"], choices=["lmlab", "trl"])
    p.add_argument("--no-pieces", action="store_true",
                   help="skip the lmlab decode-vs-recompute / single-step measurements")
    p.add_argument("--out", default="benchmarks/results/rl.json",
                   help="JSON report (not written for tiny: models)")
    a = p.parse_args()
    if a.steps <= a.warmup:
        p.error("--steps must be larger than --warmup")
    return a


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = task_data(args)
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        if "lmlab" in args.sides and not args.no_pieces:
            results["pieces"] = bench_pieces(args, rows)
        if "lmlab" in args.sides:
            results["lmlab"] = bench_lmlab(args, rows, Path(tmp))
        if "trl" in args.sides:
            results["trl"] = bench_trl(args, rows, Path(tmp))
    ratio = ratios(results)
    env = {"python": sys.version.split()[0], "torch": torch.__version__,
           "trl": _version("trl"), "transformers": _version("transformers"),
           "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
           "cores": os.cpu_count()}
    report = {"args": vars(args), "env": env,
              "shape": f"{args.prompts} prompts x {args.k} completions x {args.new_tokens} tokens",
              "results": results, "ratio": ratio}
    if not args.model.startswith("tiny:"):
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    print(f"{report['shape']}, {env['threads']} threads, {args.model}")
    print(table(results, ratio))


def _version(pkg: str) -> str:
    from importlib.metadata import version

    return version(pkg)


if __name__ == "__main__":
    main()
