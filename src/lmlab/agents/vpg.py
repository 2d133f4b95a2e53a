"""REINFORCE / vanilla policy gradient with a learned baseline and GAE (Williams 1992;
Schulman et al. 2016), as in Spinning Up's VPG.

Per rollout of ``n_steps`` x ``n_envs``: one policy step on
pg_loss = -mean(A log pi(a|s)) (A: normalised GAE(gamma, ``gae_lambda``) advantages; with
``gae_lambda`` 1 and V = 0 this is REINFORCE's return-weighted log-likelihood), then
``n_epochs`` full-batch steps of the value baseline on MSE(V, returns) at ``vf_lr``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lmlab.agents.nets import adam
from lmlab.agents.policies import (
    ActorCritic,
    agent_state,
    bind_acting,
    explained_variance,
    load_agent_state,
)

ACTIONS = ("discrete", "continuous")
TABULAR = False
FAMILY = "onpolicy"
DEFAULTS = {"lr": 3e-4, "vf_lr": 1e-3, "gamma": 0.99, "n_steps": 1000, "n_epochs": 80,
            "gae_lambda": 0.97, "ent_coef": 0.0, "hidden": [64, 64], "n_envs": 4}


def pg_loss(logp: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """The policy-gradient surrogate -mean(A log pi(a|s)); its gradient is the PG estimate."""
    return -(adv.detach() * logp).mean()


class VPGAgent:
    def __init__(self, obs_space, act_space, cfg, seed: int):
        self.cfg = cfg
        self.net = ActorCritic(obs_space, act_space, cfg.hidden, seed)
        bind_acting(self, self.net)
        pi_params = [p for n, p in self.net.named_parameters() if not n.startswith("v.")]
        self.opts = {"pi": adam(pi_params, cfg.lr),
                     "v": adam(self.net.v.parameters(), cfg.vf_lr)}
        self.step = 0

    def update(self, b: dict) -> dict:
        c, net = self.cfg, self.net
        adv = (b["adv"] - b["adv"].mean()) / (b["adv"].std() + 1e-8)
        logp, ent = net.logp_entropy(b["obs"], b["act"])
        pl = pg_loss(logp, adv) - c.ent_coef * ent.mean()
        self.opts["pi"].zero_grad(set_to_none=True)
        pl.backward()
        self.opts["pi"].step()
        for _ in range(c.n_epochs):
            vl = F.mse_loss(net.values(b["obs"]), b["ret"])
            self.opts["v"].zero_grad(set_to_none=True)
            vl.backward()
            self.opts["v"].step()
        return {"policy_loss": pl.item(), "value_loss": vl.item(), "entropy": ent.mean().item(),
                "explained_variance": explained_variance(b["val"], b["ret"])}

    def state_dict(self) -> dict:
        return agent_state(self.net, self.opts, self.step)

    def load_state_dict(self, s: dict) -> None:
        self.step = load_agent_state(self.net, self.opts, s)

    def policy_state(self) -> dict:
        return {"net": self.net.state_dict()}


def make(obs_space, act_space, cfg, seed: int) -> VPGAgent:
    return VPGAgent(obs_space, act_space, cfg, seed)
