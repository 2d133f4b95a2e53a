"""A2C (Mnih et al. 2016, synchronous): short rollouts of ``n_steps`` x ``n_envs``, one
gradient step on the whole rollout:
loss = -mean(A log pi(a|s)) + ``vf_coef`` MSE(V, returns) - ``ent_coef`` entropy,
A from GAE (``gae_lambda`` 1 = the n-step return minus V), RMSprop (alpha 0.99, eps 1e-5) and
grad-norm clip 0.5 as in Stable-Baselines3.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lmlab.agents.nets import clip_grads
from lmlab.agents.policies import (
    ActorCritic,
    agent_state,
    bind_acting,
    explained_variance,
    linear,
    load_agent_state,
    set_lr,
)
from lmlab.agents.vpg import pg_loss

ACTIONS = ("discrete", "continuous")
TABULAR = False
FAMILY = "onpolicy"
DEFAULTS = {"lr": 7e-4, "gamma": 0.99, "n_steps": 5, "gae_lambda": 1.0, "ent_coef": 0.0,
            "vf_coef": 0.5, "max_grad_norm": 0.5, "hidden": [64, 64], "n_envs": 8}


class A2CAgent:
    def __init__(self, obs_space, act_space, cfg, seed: int):
        self.cfg = cfg
        self.net = ActorCritic(obs_space, act_space, cfg.hidden, seed)
        bind_acting(self, self.net)
        self.params = list(self.net.parameters())
        self.opt = torch.optim.RMSprop(self.params, lr=cfg.lr, alpha=0.99, eps=1e-5,
                                       foreach=True)
        self.step = 0

    def update(self, b: dict) -> dict:
        c, net = self.cfg, self.net
        set_lr(self.opt, linear(c.lr, min(1.0, (self.step - len(b["adv"])) / c.max_steps),
                                c.schedule))
        logp, ent = net.logp_entropy(b["obs"], b["act"])
        pl = pg_loss(logp, b["adv"])
        vl = F.mse_loss(net.values(b["obs"]), b["ret"])
        loss = pl + c.vf_coef * vl - c.ent_coef * ent.mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_grads(self.params, c.max_grad_norm)
        self.opt.step()
        return {"policy_loss": pl.item(), "value_loss": vl.item(), "entropy": ent.mean().item(),
                "explained_variance": explained_variance(b["val"], b["ret"])}

    def state_dict(self) -> dict:
        return agent_state(self.net, {"opt": self.opt}, self.step)

    def load_state_dict(self, s: dict) -> None:
        self.step = load_agent_state(self.net, {"opt": self.opt}, s)

    def policy_state(self) -> dict:
        return {"net": self.net.state_dict()}


def make(obs_space, act_space, cfg, seed: int) -> A2CAgent:
    return A2CAgent(obs_space, act_space, cfg, seed)
