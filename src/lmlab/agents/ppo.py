"""PPO with the clipped surrogate (Schulman et al. 2017) on vectorised envs.

Per rollout of ``n_steps`` x ``n_envs`` steps: GAE(gamma, ``gae_lambda``) advantages
(``lmlab.rl.advantages.gae``, the LLM PPO's function), then ``n_epochs`` passes over shuffled
minibatches of ``batch_size``:
loss = clipped surrogate (``lmlab.losses.policy.ppo_policy_loss``, the LLM PPO's loss)
       + ``vf_coef`` MSE(V, returns) - ``ent_coef`` entropy, grad-norm clipped, Adam (eps 1e-5).
Advantages are normalised per minibatch and lr and clip range may decay linearly
(``schedule=linear``): Stable-Baselines3's choices, so its hyper-parameters carry over.
"""

from __future__ import annotations

import torch

from lmlab.agents.nets import adam, clip_grads
from lmlab.agents.policies import (
    ActorCritic,
    agent_state,
    bind_acting,
    explained_variance,
    linear,
    load_agent_state,
    set_lr,
)
from lmlab.losses.policy import ppo_policy_loss, value_loss

ACTIONS = ("discrete", "continuous")
TABULAR = False
FAMILY = "onpolicy"
DEFAULTS = {"lr": 3e-4, "gamma": 0.99, "n_steps": 2048, "batch_size": 64, "n_epochs": 10,
            "gae_lambda": 0.95, "clip": 0.2, "ent_coef": 0.0, "vf_coef": 0.5,
            "max_grad_norm": 0.5, "hidden": [64, 64], "n_envs": 1}


def normalise(adv: torch.Tensor) -> torch.Tensor:
    return (adv - adv.mean()) / (adv.std() + 1e-8) if len(adv) > 1 else adv


class PPOAgent:
    def __init__(self, obs_space, act_space, cfg, seed: int):
        self.cfg = cfg
        self.net = ActorCritic(obs_space, act_space, cfg.hidden, seed)
        bind_acting(self, self.net)
        self.params = list(self.net.parameters())
        self.opt = adam(self.params, cfg.lr, eps=1e-5)
        self.step = 0

    def update(self, b: dict) -> dict:
        c, net = self.cfg, self.net
        progress = min(1.0, (self.step - len(b["adv"])) / c.max_steps)  # at this rollout's start
        clip = linear(c.clip, progress, c.schedule)
        set_lr(self.opt, linear(c.lr, progress, c.schedule))
        n = len(b["adv"])
        ones = torch.ones(min(c.batch_size, n))
        sums = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "clip_frac": 0.0,
                "approx_kl": 0.0}
        count = 0
        for _ in range(c.n_epochs):
            perm = torch.randperm(n)
            for i in range(0, n, c.batch_size):
                mb = perm[i:i + c.batch_size]
                mask = ones if len(mb) == len(ones) else torch.ones(len(mb))
                logp, ent = net.logp_entropy(b["obs"][mb], b["act"][mb])
                pl = ppo_policy_loss(logp, b["logp"][mb], normalise(b["adv"][mb]), mask,
                                     clip_eps=clip)
                # value_loss is 0.5 MSE; SB3's vf_coef multiplies the plain MSE
                vl = 2.0 * value_loss(net.values(b["obs"][mb]), b["val"][mb], b["ret"][mb],
                                      mask, clip=0.0)[0]
                ent_mean = ent.mean()
                loss = pl.loss + c.vf_coef * vl - c.ent_coef * ent_mean
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                clip_grads(self.params, c.max_grad_norm)
                self.opt.step()
                for k, v in (("policy_loss", pl.loss), ("value_loss", vl), ("entropy", ent_mean),
                             ("clip_frac", pl.clip_frac), ("approx_kl", pl.approx_kl)):
                    sums[k] += v.item()
                count += 1
        ev = explained_variance(b["val"], b["ret"])
        return {**{k: v / count for k, v in sums.items()}, "explained_variance": ev,
                "clip_range": clip}

    def state_dict(self) -> dict:
        return agent_state(self.net, {"opt": self.opt}, self.step)

    def load_state_dict(self, s: dict) -> None:
        self.step = load_agent_state(self.net, {"opt": self.opt}, s)

    def policy_state(self) -> dict:
        return {"net": self.net.state_dict()}


def make(obs_space, act_space, cfg, seed: int) -> PPOAgent:
    return PPOAgent(obs_space, act_space, cfg, seed)
