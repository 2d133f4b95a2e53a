"""What ``lmlab grpo`` and ``lmlab ppo`` share: the config keys, setup (policy, LoRA, value head,
reference, rewards, prompts, RNG), collecting a scored rollout, one optimizer step, held-out
evaluation, checkpoints with the rollout RNG, and the final save. Each stage's module keeps its
own loop (rollout -> advantages -> epochs of minibatch updates) in plain view.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from lmlab.config import opt
from lmlab.train.config import TrainConfig


@dataclass
class OnlineConfig(TrainConfig):
    """Keys of both online stages. ``max_steps`` counts updates (one rollout each) and
    ``batch_size`` is the minibatch (sequences per optimizer step)."""

    data: str = opt("task:add", "prompts: task:<name>[,...] (built-in tasks) or a file of "
                                "{prompt, answer[, task]} rows")
    data_limit: int | None = opt(None, "use at most this many prompts (per task)", min=1)
    method: str = opt("lora", "what to train", choices=("full", "lora"))
    lora_r: int = opt(16, "LoRA rank", min=1)
    lora_alpha: float = opt(32.0, "LoRA alpha (scale = alpha / r)", min=0.0, min_exclusive=True)
    lora_targets: list[str] = opt([], "module names to adapt (default: attention and MLP)")
    merge_on_save: bool = opt(True, "merge LoRA into the base so final/ is a plain model")
    prompts_per_update: int = opt(8, "prompts sampled per update", min=1)
    group_size: int = opt(4, "completions sampled per prompt (k)", min=1)
    max_new_tokens: int = opt(32, "response length limit (tokens)", min=1)
    temperature: float = opt(1.0, "sampling temperature (log-probs use the same)", min=0.0,
                             min_exclusive=True)
    rollout_batch_size: int = opt(64, "sequences decoded together", min=1)
    decode_weights: str = opt("fp32", "CPU rollouts: the precision of the packed weights they "
                                      "decode with (bf16 / int8: fewer bytes a token, but the "
                                      "samples then come from a rounded policy while the "
                                      "losses score them under the fp32 one)",
                              choices=("fp32", "bf16", "int8"))
    share_prompts: bool = opt(True, "scoring and update forwards run each distinct prompt once "
                                    "for its k sequences (same result up to fp32 rounding)")
    epochs: int = opt(1, "passes over each rollout batch", min=1)
    clip_eps: float = opt(0.2, "ratio clip: [1 - clip_eps, 1 + clip_eps_high]", min=0.0)
    clip_eps_high: float | None = opt(None, "upper ratio clip (null = clip_eps; DAPO: 0.28)",
                                      min=0.0)
    rewards: list[str] = opt(["task"], "reward functions summed: task, format, model, token:<id>")
    reward_weights: list[float] = opt([], "weight per reward (default 1 each)")
    reward_model: str = opt("", "reward model folder (an `lmlab reward` run) for rewards=model")
    kl_stop: float = opt(0.0, "stop when the rollout KL(policy || reference), summed per "
                              "response, exceeds this (0 = never)", min=0.0)
    keep_rollouts: bool = opt(True, "write each update's rollouts to rollouts/update-N.jsonl")
    eval_tasks: list[str] = opt([], "built-in tasks for held-out evaluation (default: the "
                                    "tasks in data)")
    task_eval_n: int = opt(50, "held-out prompts per eval task (0 = no evaluation)", min=0)
    eval_max_new_tokens: int = opt(32, "tokens generated per held-out prompt (greedy)", min=1)

    def online_problems(self) -> list[str]:
        p = []
        if self.grad_accum != 1:
            p.append("grad_accum: online stages take one optimizer step per minibatch "
                     "(set batch_size instead)")
        if self.reward_weights and len(self.reward_weights) != len(self.rewards):
            p.append(f"reward_weights: {len(self.reward_weights)} weights for "
                     f"{len(self.rewards)} rewards")
        if "model" in self.rewards and not self.reward_model:
            p.append("rewards: 'model' needs reward_model=<reward run folder>")
        if self.lora_targets and self.method != "lora":
            p.append("lora_targets: only used with method=lora")
        return p


@dataclass
class Online:
    """Everything the loop touches."""

    cfg: OnlineConfig
    run: object  # lmlab.runs.Run
    model: torch.nn.Module  # ActorCritic: .actor (policy), .critic (value head or None)
    tokenizer: object
    ref_model: torch.nn.Module | None  # None: LoRA adapters disabled are the reference
    rewards: dict
    weights: dict
    stream: object  # BatchStream of prompt rows
    generator: torch.Generator  # the rollout RNG
    optimizer: torch.optim.Optimizer
    eval_rows: list[dict]
    pad_id: int
    eos: list[int]
    start: int = 0  # first update to run (after a resume)
    extra: dict | None = None  # stage state restored from the checkpoint
    before: dict | None = None  # held-out evaluation before training (the monitor's baseline)
    before_splits: dict | None = None  # split_flags before training (kept in checkpoints)
    warnings: dict = field(default_factory=dict)  # kind -> first message (lmlab.rl.monitor)


def _task_names(cfg: OnlineConfig) -> list[str]:
    from lmlab.stages.setup import eval_task_names

    return eval_task_names(cfg)


def load_prompts(cfg: OnlineConfig) -> tuple[list[dict], list[dict]]:
    """(training rows, held-out rows); every row has prompt and answer (task rows)."""
    from lmlab.data import load_rows
    from lmlab.data.tasks import task_rows

    rows = list(load_rows(cfg.data, "task", split="train", limit=cfg.data_limit))
    names = _task_names(cfg)
    if "task" in cfg.rewards and len(names) != 1:
        _check_row_tasks(rows, cfg.data)
    held = task_rows(names, "task", "test", cfg.task_eval_n) if names and cfg.task_eval_n else []
    return rows, held


def _check_row_tasks(rows: list[dict], source: str) -> None:
    """The task reward scores a row with the built-in task its 'task' field names: every row
    of a file needs one (or ``eval_tasks`` names the one task), checked before any work."""
    from lmlab.data.tasks import get_task
    from lmlab.errors import DataError

    for i, row in enumerate(rows, start=1):
        name = row.get("task")
        if not isinstance(name, str) or not name:
            raise DataError(f"row {i} has no 'task': the task reward needs the built-in task "
                            "that checks each answer (add \"task\": \"<name>\" to every row, "
                            "set eval_tasks=[<name>] for all of them, or choose other rewards)",
                            file=source, field="task")
        get_task(name)  # an unknown name is a UserError listing the tasks


def setup(cfg: OnlineConfig, stage: str, *, value_head: bool) -> Online:
    from lmlab.common import print0
    from lmlab.infer.decode import eos_ids
    from lmlab.models import load_model, load_tokenizer
    from lmlab.models.adapters import add_lora, count_parameters
    from lmlab.rl.rewards import build_rewards
    from lmlab.rl.value import ActorCritic, add_value_head
    from lmlab.stages.setup import start_stage
    from lmlab.train.data import BatchStream
    from lmlab.train.loop import build_optimizer

    rows, held = load_prompts(cfg)  # a bad file fails before the run folder is touched
    ctx = start_stage(cfg, stage)
    tokenizer = load_tokenizer(cfg.model)
    policy = load_model(cfg.model, dtype=ctx.dtype, device=ctx.device, merge_adapter=True)
    ref_model = None
    if cfg.method == "lora":
        policy = add_lora(policy, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=0.0,
                          targets=cfg.lora_targets)
    else:
        ref_model = load_model(cfg.model, dtype=ctx.dtype, device=ctx.device,
                               merge_adapter=True).eval()
        ref_model.requires_grad_(False)
    model = add_value_head(policy) if value_head else ActorCritic(policy)
    trainable, total = count_parameters(model)
    print0(f"[lmlab] {stage} on {cfg.model}: {total / 1e6:.1f}M parameters, "
           f"{trainable / 1e6:.2f}M trainable ({cfg.method}{' + value head' if value_head else ''})"
           f", {len(rows)} prompts, {cfg.prompts_per_update} x {cfg.group_size} rollouts/update")
    names = _task_names(cfg)
    fns = build_rewards(cfg.rewards, reward_model=cfg.reward_model,
                        default_task=names[0] if len(names) == 1 else None, device=ctx.device,
                        dtype=ctx.dtype)
    weights = dict(zip(cfg.rewards, cfg.reward_weights or [1.0] * len(cfg.rewards)))
    stream = BatchStream(rows, cfg.prompts_per_update, lambda x: x, seed=cfg.seed,
                         name="prompts_per_update", noun="prompts")
    generator = torch.Generator(device=ctx.device).manual_seed(cfg.seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    on = Online(cfg, ctx.run, model, tokenizer, ref_model, fns, weights, stream, generator,
                build_optimizer(model, cfg), held, pad, eos_ids(policy, tokenizer))
    resume(on)
    return on


# --- one rollout ----------------------------------------------------------------------------------


def collect(on: Online, rows: list[dict], *, policy_pass: bool = True, reference: bool = True):
    """Sample k completions per prompt, decode them, reward them, score them: a ``Rollout``.
    ``policy_pass`` / ``reference``: whether scoring computes the policy's log-probs at sampling
    time / the reference's (each one forward over the rollout)."""
    from lmlab.data import encode_prompt
    from lmlab.infer.decode import StopStrings, completion_text
    from lmlab.infer.sampling import SamplingParams
    from lmlab.rl.rewards import combine
    from lmlab.rl.rollout import Rollout, sample, score

    cfg, k = on.cfg, on.cfg.group_size
    params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature)
    prompt_ids = [encode_prompt(on.tokenizer, r["prompt"]) for r in rows]
    resp, finish = sample(on.model.actor, prompt_ids, k, params, generator=on.generator,
                          pad_id=on.pad_id, eos_ids=on.eos, batch_size=cfg.rollout_batch_size,
                          decode_weights=cfg.decode_weights)
    stops = StopStrings(on.tokenizer, [])
    texts = [completion_text(on.tokenizer, ids, why, stops) for ids, why in zip(resp, finish)]
    rows_n = [r for r in rows for _ in range(k)]
    ro = Rollout(rows_n, [p for p in prompt_ids for _ in range(k)], resp, finish, texts)
    total, ro.reward_parts = combine(on.rewards, on.weights, rows_n, texts, resp, finish)
    ro.rewards = torch.tensor(total, dtype=torch.float32)
    return score(ro, on.model.actor, value_head=on.model.critic, ref_model=on.ref_model,
                 use_reference=reference, use_policy=policy_pass, pad_id=on.pad_id,
                 temperature=cfg.temperature, share_prompts=cfg.share_prompts)


def rollout_stats(ro) -> dict:
    """Reward, KL to the reference (k3 summed per response, and per token), length, and the
    share of the most common response (across different prompts)."""
    from lmlab.rl.monitor import top_share

    m = ro.mask
    lens = m.sum(1)
    out = {"reward/mean": float(ro.rewards.mean()), "reward/std": float(ro.rewards.std())
           if len(ro) > 1 else 0.0, "response_len": float(lens.mean()),
           "truncated": sum(f == "length" for f in ro.finish) / len(ro)}
    for name, vals in ro.reward_parts.items():
        out[f"reward/{name}"] = sum(vals) / len(vals)
    if len({r["prompt"] for r in ro.rows}) > 1:  # one prompt's k answers may agree legitimately
        out["top_share"] = top_share(ro.texts)[0]
    if ro.ref_logp is not None and ro.old_logp is not None:
        out.update(kl_stats(ro.old_logp, ro.ref_logp, m))
    return out


def kl_stats(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> dict:
    """KL(policy || reference), k3 estimate: summed per response (mean over responses) and per
    token."""
    from lmlab.losses.policy import kl_estimate

    kl = kl_estimate(logp, ref_logp, "k3") * mask  # (N, R)
    return {"kl": float(kl.sum(1).mean()), "kl/token": float(kl.sum() / mask.sum().clamp(min=1))}


def minibatches(n: int, size: int, seed: int, update: int, epoch: int) -> list[torch.Tensor]:
    """A seeded permutation of the n sequences in chunks of ``size`` (a function of seed,
    update and epoch, so resume needs no state for it)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + update * 1_009 + epoch)
    order = torch.randperm(n, generator=g)
    return [order[i:i + size] for i in range(0, n, size)]


def optimizer_step(on: Online, loss: torch.Tensor) -> float:
    from lmlab.train.loop import TrainingDiverged

    if not torch.isfinite(loss):
        raise TrainingDiverged(f"loss became {loss.item()}; stopped without saving (last "
                               f"checkpoint: {on.run.latest_checkpoint() or 'none'})")
    loss.backward()
    params = [p for p in on.model.parameters() if p.requires_grad]
    clip = on.cfg.clip_grad if on.cfg.clip_grad > 0 else float("inf")
    gnorm = torch.nn.utils.clip_grad_norm_(params, clip)
    on.optimizer.step()
    on.optimizer.zero_grad(set_to_none=True)
    return float(gnorm)


def set_lr(on: Online, update: int) -> float:
    from lmlab.train.schedules import lr_factor

    cfg = on.cfg
    lr = cfg.lr * lr_factor(update, total=cfg.max_steps, warmup=cfg.warmup_steps,
                            schedule=cfg.schedule, min_ratio=cfg.min_lr_ratio)
    for g in on.optimizer.param_groups:
        g["lr"] = lr
    return lr


def mean_stats(rows: list[dict]) -> dict:
    keys = rows[0].keys() if rows else []
    return {k: sum(r[k] for r in rows) / len(rows) for k in keys}


# --- evaluation -----------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(on: Online) -> tuple[dict, list[dict]]:
    """Greedy replies to the held-out prompts: accuracy per task (the checker), mean reward of
    each reward function, mean length. Returns (metrics, samples)."""
    from lmlab.data.tasks import get_task
    from lmlab.eval.tasks import greedy_complete
    from lmlab.rl.rewards import combine

    rows = on.eval_rows
    if not rows:
        return {}, []
    actor = on.model.actor
    texts = greedy_complete(actor, on.tokenizer, [r["prompt"] for r in rows],
                            max_new_tokens=on.cfg.eval_max_new_tokens)
    ids = [on.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    finish = ["eos" if len(i) < on.cfg.eval_max_new_tokens else "length" for i in ids]
    total, parts = combine(on.rewards, on.weights, rows, texts, ids, finish)
    ok = [get_task(r["task"]).check(t, r["answer"]) for r, t in zip(rows, texts)]
    out = {"eval/reward": sum(total) / len(rows), "eval/accuracy": sum(ok) / len(rows),
           "eval/response_len": sum(len(i) for i in ids) / len(rows)}
    for name, vals in parts.items():
        out[f"eval/reward/{name}"] = sum(vals) / len(vals)
    for task in sorted({r["task"] for r in rows}):
        hits = [o for r, o in zip(rows, ok) if r["task"] == task]
        out[f"eval/accuracy/{task}"] = sum(hits) / len(hits)
    samples = [{"task": r["task"], "prompt": r["prompt"], "answer": r["answer"], "completion": t,
                "correct": c, "reward": rw} for r, t, c, rw in zip(rows, texts, ok, total)]
    return out, samples


@torch.no_grad()
def split_flags(on: Online, samples: list[dict]) -> dict | None:
    """{split: {task: [correct, ...]}}: the in-template prompts ``evaluate`` scored (from its
    samples) and the held-out-template and out-of-range prompts, measured as sft measures them
    (``lmlab.eval.tasks.measure``). None when there are no built-in eval tasks."""
    from lmlab.eval.tasks import measure

    names = _task_names(on.cfg)
    if not names or not on.cfg.task_eval_n or not samples:
        return None
    flags = {"test": {}}
    for x in samples:
        flags["test"].setdefault(x["task"], []).append(bool(x["correct"]))
    more = measure(on.model.actor, on.tokenizer, names, n=on.cfg.task_eval_n,
                   max_new_tokens=on.cfg.eval_max_new_tokens, splits=["heldout", "range"])
    return {**flags, **more["flags"]}


# --- checkpoints ----------------------------------------------------------------------------------


def save(on: Online, update: int, extra: dict) -> None:
    from lmlab.train.checkpoint import save_checkpoint

    state = {"generator": on.generator.get_state(), "before": on.before,
             "before_splits": on.before_splits,
             "warnings": dict(on.warnings), **extra}
    save_checkpoint(on.run.checkpoints, update, model=on.model, optimizer=on.optimizer,
                    stream=on.stream, extra=state, keep=on.cfg.keep_checkpoints)


def stop_request(on: Online):
    """The update loop's Ctrl-C handling (lmlab.train.interrupt): ``with O.stop_request(on) as
    stop:``; the first Ctrl-C ends the loop after the update in flight, with a checkpoint."""
    from lmlab.train.interrupt import StopRequest

    return StopRequest(on.run.latest_checkpoint)


def end_update(on: Online, stop, update: int, last: int, extra: dict) -> None:
    """After update ``update`` (1-based): a checkpoint every ``save_every``, at the last update
    and after a Ctrl-C (``stop``); then, after a Ctrl-C, end the run there."""
    from lmlab.train.interrupt import TrainingInterrupted

    asked, every = stop.requested, on.cfg.save_every  # one reading: no claim of an unsaved step
    if asked or update == last or (every and update % every == 0):
        save(on, update, extra)
    if asked:
        raise TrainingInterrupted.at(update, on.cfg.max_steps, on.run.checkpoints)


def resume(on: Online) -> None:
    """Restore weights, optimizer, prompt position, global RNG and the rollout generator."""
    from lmlab.common import print0
    from lmlab.train.checkpoint import load_checkpoint
    from lmlab.train.loop import resume_path

    path = resume_path(on.cfg, on.run)
    if path is None:
        return
    state = load_checkpoint(path, model=on.model, optimizer=on.optimizer, stream=on.stream)
    on.generator.set_state(state["extra"]["generator"])
    on.start, on.extra = int(state["step"]), state["extra"]
    on.run.rewind_metrics(on.start)
    on.before = on.extra.get("before")
    on.before_splits = on.extra.get("before_splits")
    on.warnings = dict(on.extra.get("warnings") or {})
    print0(f"[lmlab] resumed from {path} (update {on.start})")


def keep_rollouts(on: Online, ro, update: int, advantages) -> None:
    from lmlab.rl.rollout import rollout_records

    if on.cfg.keep_rollouts:
        (on.run.path / "rollouts").mkdir(exist_ok=True)
        on.run.write_jsonl(f"rollouts/update-{update:05d}.jsonl",
                           rollout_records(ro, update, advantages))


def log_update(on: Online, row: dict, ro, t0: float) -> None:
    from lmlab.common import print0

    row["train/update_s"] = time.time() - t0
    on.run.log_metrics(row)
    check_health(on, on.run.read_metrics())
    if on.cfg.progress or row["step"] % on.cfg.log_every == 0:
        sample = ro.texts[0].replace("\n", " ")[:60]
        print0(f"update {row['step']}/{on.cfg.max_steps} | reward "
               f"{row['train/reward/mean']:.3f} | kl {row.get('train/kl', 0.0):.4f} | len "
               f"{row['train/response_len']:.1f} | {row['train/update_s']:.1f}s | {sample!r}")


def check_health(on: Online, rows: list[dict]) -> None:
    """Print each new warning sign once (lmlab.rl.monitor); they go into summary.json."""
    from lmlab.common import print0
    from lmlab.rl.monitor import health_warnings

    for kind, msg in health_warnings(rows, on.before).items():
        if kind not in on.warnings:
            on.warnings[kind] = msg
            print0(f"[lmlab] warning: {msg}")


def save_final(on: Online, stage: str) -> None:
    from lmlab.models import write_meta
    from lmlab.runs import commit_folder
    from lmlab.stages.reward import policy_base

    cfg, run = on.cfg, on.run
    tmp = run.path / ".final.tmp"
    actor = on.model.actor
    merged = cfg.method != "lora" or cfg.merge_on_save
    if cfg.method == "lora" and cfg.merge_on_save:
        actor = actor.merge_and_unload()
        on.model.actor = actor
    actor.save_pretrained(tmp)
    on.tokenizer.save_pretrained(tmp)
    if on.model.critic is not None:
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous() for k, v in
                   on.model.critic.state_dict().items()}, str(tmp / "value_head.safetensors"))
    meta = {"stage": stage, "method": cfg.method, "merged": merged}
    if not merged:
        meta["base"] = policy_base(cfg.model)
    write_meta(tmp, **meta)
    commit_folder(tmp, run.final)


def finish(on, stage: str, before: dict | None, stopped: str | None, seconds: float,
           step: int) -> dict:
    """After the loop: held-out evaluation, final/, samples.jsonl, summary.json."""
    from lmlab.common import print0

    before = before or on.before  # a resumed run measured it before the interruption
    metrics = on.run.read_metrics()
    after, samples = evaluate(on)
    if after:
        check_health(on, metrics + [{"step": step, **after}])
    summary = {"stage": stage, "model": on.cfg.model, "method": on.cfg.method, "updates": step,
               "seconds": round(seconds, 1), "stopped_early": stopped,
               "rewards": on.cfg.rewards, "eval_before": before, "eval_after": after,
               "warnings": list(on.warnings.values())}
    if metrics:
        first, lastm = metrics[0], metrics[-1]
        summary.update({"reward_first": first.get("train/reward/mean"),
                        "reward_last": lastm.get("train/reward/mean"),
                        "kl_last": lastm.get("train/kl"),
                        "update_s": sum(m["train/update_s"] for m in metrics) / len(metrics)})
    if after:
        print0("[lmlab] held-out after: accuracy "
               + (f"{before['eval/accuracy']:.1%} -> " if before else "")
               + f"{after['eval/accuracy']:.1%}, reward "
               + (f"{before['eval/reward']:.3f} -> " if before else "")
               + f"{after['eval/reward']:.3f}")
    after_splits = split_flags(on, samples)
    if after_splits:  # in-template, held-out template, out-of-range: intervals and n
        from lmlab.eval.tasks import report_tasks

        old = {"flags": on.before_splits} if on.before_splits else None
        summary.update(report_tasks(old, {"flags": after_splits}, seed=on.cfg.seed))
    save_final(on, stage)
    on.run.write_jsonl("samples.jsonl", samples)
    on.run.write_json("summary.json", summary)
    print0(f"[lmlab] wrote {on.run.path}/ (final/, metrics.jsonl, rollouts/, summary.json)")
    return summary
