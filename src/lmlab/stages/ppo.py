"""`lmlab ppo`: RLHF with PPO (Schulman et al. 2017; Ziegler et al. 2019; Ouyang et al. 2022).

Each update: sample responses to ``prompts_per_update`` prompts (``group_size`` each, default 1)
with our KV-cache decode loop; score them with the reward (a reward model, or a task checker);
build per-token rewards = -kl_coef * (log pi - log pi_ref) at every token plus the score at the
last token; estimate advantages with GAE over the value head's estimates, whiten them; then
``epochs`` passes of minibatch steps on the clipped policy loss + vf_coef * clipped value loss
- ent_coef * entropy. The KL coefficient is fixed or adaptive (it grows when the measured KL is
above ``target_kl`` and shrinks below it). The value head shares the policy's body
(``rl/value.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from lmlab.config import opt
from lmlab.rl.online import OnlineConfig

HELP = "RLHF with PPO: reward model or task reward, KL penalty, GAE, value head"


@dataclass
class Config(OnlineConfig):
    rewards: list[str] = opt(["model"], "reward functions summed: model, task, format, "
                                        "token:<id>")
    group_size: int = opt(1, "responses sampled per prompt", min=1)
    epochs: int = opt(2, "PPO epochs over each rollout batch", min=1)
    kl_coef: float = opt(0.05, "initial coefficient of the per-token KL penalty in the reward "
                               "(0 = off)", min=0.0)
    kl_estimator: str = opt("k1", "per-token KL in the reward: k1 = log pi - log pi_ref, k3",
                            choices=("k1", "k2", "k3"))
    adaptive_kl: bool = opt(False, "adapt kl_coef towards target_kl (Ziegler et al. 2019)")
    target_kl: float = opt(6.0, "adaptive controller target: KL per response", min=0.0,
                           min_exclusive=True)
    kl_horizon: int = opt(10000, "adaptive controller horizon (sequences)", min=1)
    gamma: float = opt(1.0, "discount", min=0.0, max=1.0)
    lam: float = opt(0.95, "GAE lambda", min=0.0, max=1.0)
    whiten_advantages: bool = opt(True, "normalise advantages over each rollout batch")
    vf_coef: float = opt(0.1, "value loss weight", min=0.0)
    value_clip: float = opt(0.2, "value clipping range around the rollout values (0 = off)",
                            min=0.0)
    ent_coef: float = opt(0.0, "entropy bonus weight", min=0.0)
    score_clip: float = opt(0.0, "clip the sequence score to +-this (0 = off)", min=0.0)

    def validate(self) -> list[str]:
        return self.online_problems()


def adapt_kl(coef: float, kl: float, n: int, cfg: Config) -> float:
    """Ziegler et al.'s proportional controller: coef *= 1 + clip(kl / target - 1, +-0.2) * n /
    horizon."""
    err = max(-0.2, min(0.2, kl / cfg.target_kl - 1.0))
    return coef * (1.0 + err * n / cfg.kl_horizon)


def token_rewards(ro, coef: float, cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-token rewards (N, R), per-token KL (N, R)): -coef * KL at each token, plus the
    sequence score at each response's last token."""
    from lmlab.losses.policy import kl_estimate

    m = ro.mask
    kl = kl_estimate(ro.old_logp, ro.ref_logp, cfg.kl_estimator) * m
    scores = ro.rewards.clamp(-cfg.score_clip, cfg.score_clip) if cfg.score_clip else ro.rewards
    r = -coef * kl
    last = (m.sum(1).long() - 1).clamp(min=0)  # (N,)
    r[torch.arange(len(last)), last] += scores.to(r.dtype)
    return r, kl


def update(on, ro, adv: torch.Tensor, returns: torch.Tensor, step: int) -> dict:
    """``epochs`` passes of minibatch steps on policy + value + entropy losses."""
    from lmlab.losses.policy import entropy_from_logits, ppo_policy_loss, value_loss
    from lmlab.rl.advantages import masked_mean
    from lmlab.rl.online import mean_stats, minibatches, optimizer_step
    from lmlab.rl.rollout import response_forward, slice_batch

    cfg, model = on.cfg, on.model
    model.train()
    stats = []
    for epoch in range(cfg.epochs):
        for idx in minibatches(len(ro), cfg.batch_size, cfg.seed, step, epoch):
            sub = slice_batch(ro.batch, idx)
            m = sub["response_mask"]
            logp, values, logits = response_forward(model.actor, sub, model.critic,
                                                    with_logits=True, temperature=cfg.temperature,
                                                    share_prompts=cfg.share_prompts)
            pol = ppo_policy_loss(logp, ro.old_logp[idx], adv[idx], m, clip_eps=cfg.clip_eps,
                                  clip_eps_high=cfg.clip_eps_high)
            vloss, vclip = value_loss(values, ro.values[idx], returns[idx], m,
                                      clip=cfg.value_clip)
            entropy = masked_mean(entropy_from_logits(logits), m)
            loss = pol.loss + cfg.vf_coef * vloss - cfg.ent_coef * entropy
            gnorm = optimizer_step(on, loss)
            stats.append({"loss": float(loss.detach()), "policy_loss": float(pol.loss.detach()),
                          "value_loss": float(vloss.detach()), "value_clip_frac": float(vclip),
                          "clip_frac": float(pol.clip_frac), "approx_kl": float(pol.approx_kl),
                          "entropy": float(entropy.detach()), "grad_norm": gnorm})
    return mean_stats(stats)


def run(cfg: Config, *, stop_after: int | None = None) -> dict:
    from lmlab.common import print0
    from lmlab.rl import online as O
    from lmlab.rl.advantages import gae, masked_mean, whiten

    on = O.setup(cfg, "ppo", value_head=True)
    coef = float((on.extra or {}).get("kl_coef", cfg.kl_coef))
    before, before_samples = O.evaluate(on) if on.start == 0 else (None, [])
    if on.start == 0:  # the held-out splits too, measured once (resumes read the checkpoint)
        on.before_splits = O.split_flags(on, before_samples)
    on.before = before or on.before  # kept in checkpoints for the monitor
    if before:
        print0(f"[lmlab] held-out before: reward {before['eval/reward']:.3f}, task accuracy "
               f"{before['eval/accuracy']:.1%}")
    last = cfg.max_steps if stop_after is None else min(cfg.max_steps, on.start + stop_after)
    stopped, t_start, step = None, time.time(), on.start
    with O.stop_request(on) as stop:
        for step in range(on.start, last):
            t0 = time.time()
            lr = O.set_lr(on, step)
            # 1. rollout: responses, their scores, policy / reference log-probs and values
            ro = O.collect(on, on.stream.next())
            roll = O.rollout_stats(ro)
            # 2. per-token rewards with the KL penalty, then GAE and whitening
            rewards, kl = token_rewards(ro, coef, cfg)
            adv, returns = gae(rewards, ro.values, ro.mask, gamma=cfg.gamma, lam=cfg.lam)
            if cfg.whiten_advantages:
                adv = whiten(adv, ro.mask)
            row = {"step": step + 1, "train/lr": lr, "train/rollout_s": time.time() - t0,
                   **{f"train/{k}": v for k, v in roll.items()}, "train/kl_coef": coef,
                   "train/kl_penalty": float(kl.sum(1).mean()) * coef,
                   "train/value_mean": float(masked_mean(ro.values, ro.mask)),
                   "train/return_mean": float(masked_mean(returns, ro.mask))}
            O.keep_rollouts(on, ro, step + 1, adv)
            if cfg.kl_stop and roll["kl"] > cfg.kl_stop:
                stopped = f"KL {roll['kl']:.3f} > kl_stop {cfg.kl_stop} at update {step + 1}"
                O.log_update(on, row, ro, t0)
                print0(f"[lmlab] stopping early: {stopped}")
                break
            # 3. PPO epochs of minibatch updates
            row.update({f"train/{k}": v for k, v in update(on, ro, adv, returns, step).items()})
            if cfg.adaptive_kl:
                coef = adapt_kl(coef, roll["kl"], len(ro), cfg)  # k3: never negative, unlike k1
            if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.max_steps:
                row.update(O.evaluate(on)[0])
            O.log_update(on, row, ro, t0)
            O.end_update(on, stop, step + 1, last, {"kl_coef": coef})  # stops after a Ctrl-C
        else:
            step = last
    summary = O.finish(on, "ppo", before, stopped, time.time() - t_start, step)
    summary["kl_coef_final"] = coef
    on.run.write_json("summary.json", summary)
    return summary
