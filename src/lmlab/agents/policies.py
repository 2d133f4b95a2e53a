"""The stochastic actor-critic of the on-policy agents (VPG, A2C, PPO): separate policy and
value MLPs (tanh, orthogonal init: policy head gain 0.01, value head 1, as Stable-Baselines3
and CleanRL), a categorical head for discrete actions or a diagonal Gaussian with a learned,
state-independent log std for continuous ones (actions clipped to the Box when stepping).

Acting (``act_train``: action, log-prob, value) runs in numpy on views of the weights;
``logp_entropy`` recomputes log-probs and entropies in torch for the update.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from lmlab.agents.nets import NumpyMLP, encode_obs, mlp, obs_size
from lmlab.losses.policy import entropy_from_logits

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class ActorCritic(nn.Module):
    def __init__(self, obs_space, act_space, hidden: list[int], seed: int):
        import gymnasium as gym

        super().__init__()
        self.obs_space = obs_space
        self.discrete = isinstance(act_space, gym.spaces.Discrete)
        n_obs = obs_size(obs_space)
        n_out = int(act_space.n) if self.discrete else int(np.prod(act_space.shape))
        self.pi = mlp([n_obs, *hidden, n_out], "tanh", out_gain=0.01, orthogonal=True)
        self.v = mlp([n_obs, *hidden, 1], "tanh", out_gain=1.0, orthogonal=True)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.zeros(n_out))
            self.low, self.high, self.shape = act_space.low, act_space.high, act_space.shape
        self.pi_np, self.v_np = NumpyMLP(self.pi), NumpyMLP(self.v)
        self.rng = np.random.default_rng([seed, 2])
        self.act_shape = () if self.discrete else (n_out,)

    # --- acting (numpy) -----------------------------------------------------------------------

    def encode(self, obs) -> np.ndarray:
        return encode_obs(self.obs_space, obs)

    def to_env(self, a: np.ndarray) -> np.ndarray:
        if self.discrete:
            return a
        return np.clip(a, self.low, self.high).reshape(len(a), *self.shape)

    def value(self, obs: np.ndarray) -> np.ndarray:
        return self.v_np(obs)[:, 0]

    def act_train(self, obs: np.ndarray):
        """(actions, their log-probs, values) for (n, obs) observations."""
        out = self.pi_np(obs)
        if self.discrete:
            z = out - out.max(axis=1, keepdims=True)
            logp_all = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            u = self.rng.random((len(obs), 1))
            a = (np.exp(logp_all).cumsum(axis=1) < u).sum(axis=1)
            a = np.minimum(a, out.shape[1] - 1)  # a cumulative sum that rounds below u
            logp = logp_all[np.arange(len(obs)), a]
        else:
            log_std = self.log_std.detach().numpy()
            eps = self.rng.standard_normal(out.shape).astype(np.float32)
            a = out + np.exp(log_std) * eps
            logp = (-0.5 * eps ** 2 - log_std - HALF_LOG_2PI).sum(axis=1)
        return a, logp.astype(np.float32), self.value(obs)

    def act(self, obs: np.ndarray, explore: bool = False) -> np.ndarray:
        if explore:
            return self.act_train(obs)[0]
        out = self.pi_np(obs)
        return out.argmax(axis=1) if self.discrete else out

    # --- learning (torch) ---------------------------------------------------------------------

    def logp_entropy(self, obs: torch.Tensor, act: torch.Tensor):
        """(log pi(a|s), entropy of pi(.|s)), both (B,)."""
        out = self.pi(obs)
        if self.discrete:
            logp_all = torch.log_softmax(out, dim=-1)
            return logp_all.gather(1, act.long().unsqueeze(1)).squeeze(1), \
                entropy_from_logits(out)
        z = (act - out) / self.log_std.exp()
        logp = (-0.5 * z ** 2 - self.log_std - HALF_LOG_2PI).sum(-1)
        ent = (self.log_std + 0.5 + HALF_LOG_2PI).sum().expand(len(obs))
        return logp, ent

    def values(self, obs: torch.Tensor) -> torch.Tensor:
        return self.v(obs).squeeze(-1)


def explained_variance(pred: torch.Tensor, target: torch.Tensor) -> float:
    """1 - Var(target - pred) / Var(target): 1 is a perfect value function, 0 a constant."""
    var = target.var()
    return float("nan") if var == 0 else float(1 - (target - pred).var() / var)


def bind_acting(agent, net: ActorCritic) -> None:
    """Give an on-policy agent its network's acting methods (what the loops call)."""
    for name in ("encode", "to_env", "value", "act_train", "act"):
        setattr(agent, name, getattr(net, name))
    agent.act_shape = net.act_shape


def linear(start: float, progress: float, schedule: str) -> float:
    """``start`` (constant) or ``start`` x the fraction of steps left (linear, as SB3's lin_x)."""
    return start * (1.0 - progress) if schedule == "linear" else start


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr


def agent_state(net: ActorCritic, opts: dict, step: int) -> dict:
    return {"net": net.state_dict(), "opts": {k: o.state_dict() for k, o in opts.items()},
            "rng": net.rng.bit_generator.state, "step": step}


def load_agent_state(net: ActorCritic, opts: dict, s: dict) -> int:
    """Restore what ``agent_state`` saved; returns the step."""
    net.load_state_dict(s["net"])
    for k, o in opts.items():
        o.load_state_dict(s["opts"][k])
    net.rng.bit_generator.state = s["rng"]
    return s["step"]
