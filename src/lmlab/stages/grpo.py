"""`lmlab grpo`: group relative policy optimisation with verifiable rewards (Shao et al. 2024).

Each update: take ``prompts_per_update`` prompts, sample ``group_size`` completions of each with
our KV-cache decode loop, reward them (task checker, format, reward model, or a weighted sum),
turn each group's rewards into advantages (group-normalised, or RLOO leave-one-out), then run
``epochs`` passes of minibatch steps on the clipped objective, optionally with beta * KL(pi ||
pi_ref) (k3). No value model. Per update: metrics.jsonl, rollouts/update-N.jsonl, checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from lmlab.config import opt
from lmlab.rl.online import OnlineConfig

HELP = "online RL with group-relative advantages (GRPO / RLOO), verifiable or model rewards"


@dataclass
class Config(OnlineConfig):
    beta: float = opt(0.0, "KL(policy || reference) coefficient in the loss (k3); 0 = off "
                           "(the KL is still measured and logged unless log_kl=false)", min=0.0)
    log_kl: bool = opt(True, "with beta=0 and kl_stop=0, still run the reference forward to log "
                             "the KL (false: skip it, as TRL does)")
    advantage: str = opt("group", "group: (r - mean) / std within each prompt's group; rloo: "
                                  "r minus the mean of the other k-1", choices=("group", "rloo"))
    scale_rewards: str = opt("group", "group advantage divisor: group std, batch std, or none",
                             choices=("group", "batch", "none"))
    loss_level: str = opt("sequence", "sequence: mean per completion, then over completions "
                                      "(GRPO); token: mean over all tokens (DAPO)",
                          choices=("sequence", "token"))

    def validate(self) -> list[str]:
        p = self.online_problems()
        if self.group_size < 2:
            p.append("group_size: GRPO compares completions of the same prompt; use >= 2")
        return p


def advantages(cfg: Config, rewards: torch.Tensor) -> torch.Tensor:
    """(N,) rewards -> (N,) advantages, one per completion."""
    from lmlab.rl.advantages import group_advantages, rloo_advantages

    if cfg.advantage == "rloo":
        return rloo_advantages(rewards, cfg.group_size)
    return group_advantages(rewards, cfg.group_size, scale=cfg.scale_rewards)


def one_step(cfg: Config) -> bool:
    """One optimizer step per rollout and nothing that needs the policy's log-probs before it:
    the log-probs at sampling time then equal the update's own (detached), and the separate
    scoring pass is skipped."""
    return (cfg.epochs == 1 and cfg.batch_size >= cfg.prompts_per_update * cfg.group_size
            and not cfg.kl_stop)


def needs_reference(cfg: Config) -> bool:
    return cfg.beta > 0 or cfg.kl_stop > 0 or cfg.log_kl


def update(on, ro, adv: torch.Tensor, step: int) -> dict:
    """``epochs`` passes of minibatch steps over one rollout; mean metrics over the steps. A
    rollout scored without the policy pass (``ro.old_logp`` None, see ``one_step``) takes the
    old log-probs from the step's own forward, and its KL to the reference from there too."""
    from lmlab.losses.policy import entropy_from_logits, grpo_loss
    from lmlab.rl.advantages import masked_mean
    from lmlab.rl.online import kl_stats, mean_stats, minibatches, optimizer_step
    from lmlab.rl.rollout import response_forward, slice_batch

    cfg, actor = on.cfg, on.model.actor
    actor.train()
    stats = []
    for epoch in range(cfg.epochs):
        for idx in minibatches(len(ro), cfg.batch_size, cfg.seed, step, epoch):
            sub = slice_batch(ro.batch, idx)
            m = sub["response_mask"]
            logp, _, logits = response_forward(actor, sub, with_logits=True,
                                               temperature=cfg.temperature,
                                               share_prompts=cfg.share_prompts)
            old = ro.old_logp[idx] if ro.old_logp is not None else logp.detach()
            ref = ro.ref_logp[idx] if ro.ref_logp is not None else None
            out = grpo_loss(logp, old, adv[idx], m, ref_logp=ref,
                            beta=cfg.beta, clip_eps=cfg.clip_eps,
                            clip_eps_high=cfg.clip_eps_high, level=cfg.loss_level)
            gnorm = optimizer_step(on, out.loss)
            with torch.no_grad():
                entropy = masked_mean(entropy_from_logits(logits), m)
            stats.append({"loss": float(out.loss.detach()), "clip_frac": float(out.clip_frac),
                          "approx_kl": float(out.approx_kl), "entropy": float(entropy),
                          "grad_norm": gnorm})
            if ro.old_logp is None and ref is not None:  # the rollout's KL, from this forward
                stats[-1].update(kl_stats(old, ref, m))
    return mean_stats(stats)


def run(cfg: Config, *, stop_after: int | None = None) -> dict:
    from lmlab.common import print0
    from lmlab.rl import online as O

    on = O.setup(cfg, "grpo", value_head=False)
    before, before_samples = O.evaluate(on) if on.start == 0 else (None, [])
    if on.start == 0:  # the held-out splits too, measured once (resumes read the checkpoint)
        on.before_splits = O.split_flags(on, before_samples)
    on.before = before or on.before  # kept in checkpoints for the monitor
    if before:
        print0(f"[lmlab] held-out before: accuracy {before['eval/accuracy']:.1%}, reward "
               f"{before['eval/reward']:.3f}")
    last = cfg.max_steps if stop_after is None else min(cfg.max_steps, on.start + stop_after)
    stopped, t_start, step = None, time.time(), on.start
    with O.stop_request(on) as stop:
        for step in range(on.start, last):
            t0 = time.time()
            lr = O.set_lr(on, step)
            # 1. rollout: k completions per prompt, rewarded and scored
            ro = O.collect(on, on.stream.next(), policy_pass=not one_step(cfg),
                           reference=needs_reference(cfg))
            roll = O.rollout_stats(ro)
            # 2. advantages: one per completion, relative to its group
            adv = advantages(cfg, ro.rewards)
            row = {"step": step + 1, "train/lr": lr, "train/rollout_s": time.time() - t0,
                   **{f"train/{k}": v for k, v in roll.items()},
                   "train/zero_std_groups": float(
                       (ro.rewards.view(-1, cfg.group_size).std(1) == 0).float().mean())}
            O.keep_rollouts(on, ro, step + 1, adv)
            if cfg.kl_stop and roll.get("kl", 0.0) > cfg.kl_stop:
                stopped = f"KL {roll['kl']:.3f} > kl_stop {cfg.kl_stop} at update {step + 1}"
                O.log_update(on, row, ro, t0)
                print0(f"[lmlab] stopping early: {stopped}")
                break
            # 3. several epochs of minibatch updates on the clipped objective
            row.update({f"train/{k}": v for k, v in update(on, ro, adv, step).items()})
            if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.max_steps:
                row.update(O.evaluate(on)[0])
            O.log_update(on, row, ro, t0)
            O.end_update(on, stop, step + 1, last, {})  # stops after a Ctrl-C
        else:
            step = last
    return O.finish(on, "grpo", before, stopped, time.time() - t_start, step)

