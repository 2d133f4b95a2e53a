"""What the continuous-action agents (DDPG, TD3, SAC) share: actions live in [-1, 1] inside the
agent and the buffer (the networks end in tanh) and are scaled to the env's Box bounds only
when stepping it; the critic reads [observation, action]."""

from __future__ import annotations

import numpy as np
import torch

from lmlab.agents.nets import encode_obs


class BoxActions:
    def __init__(self, obs_space, act_space):
        self.obs_space = obs_space
        self.low = act_space.low.astype(np.float32)
        self.half = ((act_space.high - act_space.low) / 2).astype(np.float32)
        self.dim = int(np.prod(act_space.shape))
        self.shape = act_space.shape

    def encode(self, obs) -> np.ndarray:
        return encode_obs(self.obs_space, obs)

    def to_env(self, a: np.ndarray) -> np.ndarray:
        """[-1, 1] -> [low, high]."""
        return (self.low + (a + 1.0) * self.half).reshape(len(a), *self.shape)

    def random(self, n: int, rng) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, (n, self.dim)).astype(np.float32)


def critic_input(obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    return torch.cat([obs, act], dim=1)  # (B, obs + act)


def q_of(critic, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """All K critics' values: (K, B)."""
    return critic(critic_input(obs, act)).squeeze(-1)


def first_q_frozen(critic, obs: torch.Tensor, act: torch.Tensor, k: int = 1) -> torch.Tensor:
    """The first ``k`` critics' values (k, B) with gradients to ``act`` only (the actor's loss
    needs no critic weight gradients: this saves their matmuls)."""
    x = critic_input(obs, act)
    last = len(critic.weights) - 1
    for i, (w, b) in enumerate(zip(critic.weights, critic.biases)):
        x = torch.baddbmm(b.detach()[:k], x if x.dim() == 3 else x.expand(k, *x.shape),
                          w.detach()[:k])
        if i < last:
            x = torch.relu(x)
    return x.squeeze(-1)


def optim_state(named: dict) -> dict:
    return {k: v.state_dict() for k, v in named.items()}


def load_optim_state(named: dict, state: dict) -> None:
    for k, v in named.items():
        v.load_state_dict(state[k])
