"""The replay buffer of the off-policy agents (DQN, DDPG, TD3, SAC): a ring of numpy arrays
filled by a vector env's batched steps, sampled uniformly with the loop's own generator.

It is saved in checkpoints (only its filled part), so a resumed run samples exactly what the
uninterrupted run would have.
"""

from __future__ import annotations

import numpy as np
import torch


class ReplayBuffer:
    def __init__(self, capacity: int, obs_dim: int, act_shape: tuple, act_dtype=np.float32):
        self.capacity, self.pos, self.size = capacity, 0, 0
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.act = np.zeros((capacity, *act_shape), act_dtype)
        self.rew = np.zeros(capacity, np.float32)
        self.term = np.zeros(capacity, np.float32)  # 1: the MDP ended (no bootstrap)

    def add(self, obs, act, rew, next_obs, term) -> None:
        """One row per environment of a vector step (n rows)."""
        n = len(obs)
        idx = (self.pos + np.arange(n)) % self.capacity
        self.obs[idx], self.next_obs[idx], self.act[idx] = obs, next_obs, act
        self.rew[idx], self.term[idx] = rew, term
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """``batch_size`` transitions drawn uniformly with replacement from what is stored."""
        idx = rng.integers(0, self.size, batch_size)
        return {k: torch.from_numpy(getattr(self, k)[idx])
                for k in ("obs", "act", "rew", "next_obs", "term")}

    def state_dict(self) -> dict:
        keep = slice(0, self.size)
        return {"pos": self.pos, "size": self.size,
                **{k: getattr(self, k)[keep].copy() for k in ("obs", "next_obs", "act", "rew",
                                                               "term")}}

    def load_state_dict(self, state: dict) -> None:
        self.pos, self.size = state["pos"], state["size"]
        for k in ("obs", "next_obs", "act", "rew", "term"):
            getattr(self, k)[:self.size] = state[k]
