"""SAC (Haarnoja et al. 2018, with the learned temperature of the second paper): a squashed
Gaussian actor a = tanh(u), u ~ N(mu(s), sigma(s)), twin critics and their Polyak targets.

critic: 0.5 sum_k MSE(Q_k(s, a), r + gamma (1 - d) [min_k Q_k'(s', a') - alpha log pi(a'|s')])
actor:  mean(alpha log pi(a|s) - min_k Q_k(s, a)), a ~ pi(.|s) reparameterised
alpha:  sac_alpha_loss(log alpha, log pi(a|s), target entropy = -dim(A)) unless ``alpha`` is
        fixed. Update order and alpha handling as in Stable-Baselines3 (alpha first; the old
        alpha is used in this step's critic and actor losses).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from lmlab.agents.continuous import (
    BoxActions,
    first_q_frozen,
    load_optim_state,
    optim_state,
    q_of,
)
from lmlab.agents.nets import (
    Ensemble,
    NumpyMLP,
    adam,
    frozen_copy,
    mlp,
    obs_size,
    soft_update,
)
from lmlab.losses.td import clipped_double_q, sac_alpha_loss, td_target

ACTIONS = ("continuous",)
TABULAR = False
FAMILY = "offpolicy"
DEFAULTS = {"lr": 3e-4, "gamma": 0.99, "batch_size": 256, "buffer_size": 1_000_000,
            "learning_starts": 100, "train_freq": 1, "gradient_steps": 1, "tau": 0.005,
            "hidden": [256, 256], "n_envs": 1}
LOG_STD = (-20.0, 2.0)
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def squashed_logp(u: torch.Tensor, mu: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log pi(tanh(u)) for u ~ N(mu, exp(log_std)), summed over action dims: (B, A) -> (B,).
    The tanh correction log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for big u."""
    normal = -0.5 * ((u - mu) / log_std.exp()) ** 2 - log_std - HALF_LOG_2PI
    return (normal - 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)


class SACAgent:
    act_dtype = np.float32

    def __init__(self, obs_space, act_space, cfg, seed: int):
        self.cfg, self.box = cfg, BoxActions(obs_space, act_space)
        self.act_shape = (self.box.dim,)
        n_obs, A = obs_size(obs_space), self.box.dim
        self.actor = mlp([n_obs, *cfg.hidden, 2 * A])  # mean and log std
        self.critic = Ensemble(2, [n_obs + A, *cfg.hidden, 1])
        self.critic_t = frozen_copy(self.critic)
        self.log_alpha = torch.zeros(1, requires_grad=True)  # alpha starts at 1 (SB3 "auto")
        self.learn_alpha = cfg.alpha is None
        if not self.learn_alpha:
            self.log_alpha.data.fill_(math.log(cfg.alpha))
        self.target_entropy = -float(A)
        self.opt = {"actor": adam(self.actor.parameters(), cfg.lr),
                    "critic": adam(self.critic.parameters(), cfg.lr),
                    "alpha": adam([self.log_alpha], cfg.lr)}
        self.actor_np = NumpyMLP(self.actor)
        self.rng = np.random.default_rng([seed, 2])
        self.step = self.updates = 0
        self.encode, self.to_env, self.random_action = self.box.encode, self.box.to_env, \
            self.box.random

    def on_step(self) -> None:
        pass

    def act(self, obs: np.ndarray, explore: bool = False) -> np.ndarray:
        mu, log_std = np.split(self.actor_np(obs), 2, axis=1)
        if not explore:
            return np.tanh(mu).astype(np.float32)
        std = np.exp(np.clip(log_std, *LOG_STD))
        return np.tanh(mu + std * self.rng.standard_normal(mu.shape)).astype(np.float32)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(actions in [-1, 1], their log-probs), reparameterised: (B, A), (B,)."""
        mu, log_std = self.actor(obs).chunk(2, dim=-1)
        log_std = log_std.clamp(*LOG_STD)
        u = mu + log_std.exp() * torch.randn_like(mu)
        return torch.tanh(u), squashed_logp(u, mu, log_std)

    def update(self, b: dict) -> dict:
        c = self.cfg
        a_pi, logp = self.sample(b["obs"])
        alpha = self.log_alpha.detach().exp()
        out = {"alpha": alpha.item()}
        if self.learn_alpha:
            alpha_loss = sac_alpha_loss(self.log_alpha, logp, self.target_entropy)
            self.opt["alpha"].zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.opt["alpha"].step()
            out["alpha_loss"] = alpha_loss.item()
        with torch.no_grad():
            a2, logp2 = self.sample(b["next_obs"])
            q_t = q_of(self.critic_t, b["next_obs"], a2)  # (2, B)
            y = td_target(b["rew"], clipped_double_q(q_t[0], q_t[1], logp2, alpha), b["term"],
                          c.gamma)
        q = q_of(self.critic, b["obs"], b["act"])  # (2, B)
        critic_loss = 0.5 * (F.mse_loss(q[0], y) + F.mse_loss(q[1], y))
        self.opt["critic"].zero_grad(set_to_none=True)
        critic_loss.backward()
        self.opt["critic"].step()
        q_pi = first_q_frozen(self.critic, b["obs"], a_pi, k=2)  # (2, B)
        actor_loss = (alpha * logp - torch.min(q_pi[0], q_pi[1])).mean()
        self.opt["actor"].zero_grad(set_to_none=True)
        actor_loss.backward()
        self.opt["actor"].step()
        soft_update(self.critic_t, self.critic, c.tau)
        self.updates += 1
        out.update(critic_loss=critic_loss.item(), actor_loss=actor_loss.item(),
                   q=q[0].mean().item(), entropy=-logp.mean().item())
        return out

    def state_dict(self) -> dict:
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "critic_t": self.critic_t.state_dict(), "log_alpha": self.log_alpha.detach(),
                "opt": optim_state(self.opt), "rng": self.rng.bit_generator.state,
                "step": self.step, "updates": self.updates}

    def load_state_dict(self, s: dict) -> None:
        for k in ("actor", "critic", "critic_t"):
            getattr(self, k).load_state_dict(s[k])
        self.log_alpha.data.copy_(s["log_alpha"])
        load_optim_state(self.opt, s["opt"])
        self.rng.bit_generator.state = s["rng"]
        self.step, self.updates = s["step"], s["updates"]

    def policy_state(self) -> dict:
        return {"actor": self.actor.state_dict()}


def make(obs_space, act_space, cfg, seed: int) -> SACAgent:
    return SACAgent(obs_space, act_space, cfg, seed)
