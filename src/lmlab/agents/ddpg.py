"""DDPG (Lillicrap et al. 2016): a deterministic actor mu(s) in [-1, 1] and a critic Q(s, a),
with target copies of both moved by Polyak averaging (``tau``).

critic: MSE(Q(s, a), r + gamma (1 - terminated) Q'(s', mu'(s')))
actor:  -mean Q(s, mu(s))
Exploration: Gaussian noise of std ``action_noise`` added to mu(s), clipped to [-1, 1].
TD3 (td3.py) is this agent with twin critics, target policy smoothing and a delayed actor:
``DeterministicAgent`` takes those as settings, DDPG sets them off (as Stable-Baselines3 does).
"""

from __future__ import annotations

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
from lmlab.losses.td import clipped_double_q, td_target

ACTIONS = ("continuous",)
TABULAR = False
FAMILY = "offpolicy"
DEFAULTS = {"lr": 1e-3, "gamma": 0.99, "batch_size": 256, "buffer_size": 1_000_000,
            "learning_starts": 100, "train_freq": 1, "gradient_steps": 1, "tau": 0.005,
            "action_noise": 0.1, "hidden": [256, 256], "n_envs": 1}


def smoothed_target_action(a: torch.Tensor, noise: float, clip: float) -> torch.Tensor:
    """TD3's target policy smoothing: a + clip(N(0, noise), -clip, clip), kept in [-1, 1]."""
    if noise <= 0:
        return a
    eps = (torch.randn_like(a) * noise).clamp(-clip, clip)
    return (a + eps).clamp(-1.0, 1.0)


class DeterministicAgent:
    act_dtype = np.float32

    def __init__(self, obs_space, act_space, cfg, seed: int, *, critics: int = 1,
                 policy_delay: int = 1, target_noise: float = 0.0, noise_clip: float = 0.5):
        self.cfg, self.box = cfg, BoxActions(obs_space, act_space)
        self.act_shape = (self.box.dim,)
        n_obs = obs_size(obs_space)
        self.actor = mlp([n_obs, *cfg.hidden, self.box.dim])
        self.critic = Ensemble(critics, [n_obs + self.box.dim, *cfg.hidden, 1])
        self.actor_t, self.critic_t = frozen_copy(self.actor), frozen_copy(self.critic)
        self.opt = {"actor": adam(self.actor.parameters(), cfg.lr),
                    "critic": adam(self.critic.parameters(), cfg.lr)}
        self.actor_np = NumpyMLP(self.actor)
        self.policy_delay, self.target_noise, self.noise_clip = policy_delay, target_noise, \
            noise_clip
        self.rng = np.random.default_rng([seed, 2])
        self.step = self.updates = 0
        self.encode, self.to_env, self.random_action = self.box.encode, self.box.to_env, \
            self.box.random

    def on_step(self) -> None:
        pass

    def act(self, obs: np.ndarray, explore: bool = False) -> np.ndarray:
        a = np.tanh(self.actor_np(obs))
        if explore and self.cfg.action_noise > 0:
            a = np.clip(a + self.rng.normal(0.0, self.cfg.action_noise, a.shape), -1.0, 1.0)
        return a.astype(np.float32)

    def update(self, b: dict) -> dict:
        c = self.cfg
        with torch.no_grad():
            a2 = smoothed_target_action(torch.tanh(self.actor_t(b["next_obs"])),
                                        self.target_noise, self.noise_clip)
            q_t = q_of(self.critic_t, b["next_obs"], a2)  # (K, B)
            v = clipped_double_q(q_t[0], q_t[-1])  # K = 1: Q'(s', a')
            y = td_target(b["rew"], v, b["term"], c.gamma)
        q = q_of(self.critic, b["obs"], b["act"])  # (K, B)
        critic_loss = sum(F.mse_loss(qk, y) for qk in q)
        self.opt["critic"].zero_grad(set_to_none=True)
        critic_loss.backward()
        self.opt["critic"].step()
        self.updates += 1
        out = {"critic_loss": critic_loss.item(), "q": q[0].mean().item()}
        if self.updates % self.policy_delay == 0:
            actor_loss = -first_q_frozen(self.critic, b["obs"],
                                         torch.tanh(self.actor(b["obs"])))[0].mean()
            self.opt["actor"].zero_grad(set_to_none=True)
            actor_loss.backward()
            self.opt["actor"].step()
            soft_update(self.critic_t, self.critic, c.tau)
            soft_update(self.actor_t, self.actor, c.tau)
            out["actor_loss"] = actor_loss.item()
        return out

    def state_dict(self) -> dict:
        nets = ("actor", "critic", "actor_t", "critic_t")
        return {**{k: getattr(self, k).state_dict() for k in nets}, "opt": optim_state(self.opt),
                "rng": self.rng.bit_generator.state, "step": self.step, "updates": self.updates}

    def load_state_dict(self, s: dict) -> None:
        for k in ("actor", "critic", "actor_t", "critic_t"):
            getattr(self, k).load_state_dict(s[k])
        load_optim_state(self.opt, s["opt"])
        self.rng.bit_generator.state = s["rng"]
        self.step, self.updates = s["step"], s["updates"]

    def policy_state(self) -> dict:
        return {"actor": self.actor.state_dict()}


def make(obs_space, act_space, cfg, seed: int) -> DeterministicAgent:
    return DeterministicAgent(obs_space, act_space, cfg, seed)
