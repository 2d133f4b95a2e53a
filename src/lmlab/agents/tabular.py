"""Tabular Q-learning (Watkins 1989) and SARSA (Rummery & Niranjan 1994) on finite MDPs
(FrozenLake, Taxi, CliffWalking, GridWorld).

Q(s, a) <- Q(s, a) + alpha (target - Q(s, a)), with
  Q-learning (off-policy): target = r + gamma (1 - terminated) max_a' Q(s', a')
  SARSA (on-policy):       target = r + gamma (1 - terminated) Q(s', a'), a' the next action
Behaviour: epsilon-greedy, epsilon decaying linearly over ``exploration_fraction`` of the steps;
greedy ties broken by the lowest action index (deterministic evaluation).
"""

from __future__ import annotations

import numpy as np

from lmlab.losses.td import td_target

ACTIONS = ("discrete",)
TABULAR = True
FAMILY = "tabular"
DEFAULTS = {"lr": 0.1, "gamma": 0.99, "exploration_fraction": 0.5, "epsilon_end": 0.05,
            "n_envs": 1}


def q_learning_target(q: np.ndarray, r: float, s2: int, terminated: bool, gamma: float) -> float:
    return td_target(r, q[s2].max(), float(terminated), gamma)


def sarsa_target(q: np.ndarray, r: float, s2: int, a2: int, terminated: bool,
                 gamma: float) -> float:
    return td_target(r, q[s2, a2], float(terminated), gamma)


def td_update(q: np.ndarray, s: int, a: int, target: float, alpha: float) -> float:
    """Move Q(s, a) a step ``alpha`` toward ``target`` in place; returns the TD error."""
    err = target - q[s, a]
    q[s, a] += alpha * err
    return float(err)


def linear_epsilon(step: int, total: int, fraction: float, end: float) -> float:
    """1 -> ``end`` linearly over the first ``fraction`` of ``total`` steps, then ``end``."""
    span = max(1.0, fraction * total)
    return max(end, 1.0 - (1.0 - end) * step / span)


class TabularAgent:
    def __init__(self, n_states: int, n_actions: int, cfg, seed: int, algo: str):
        self.q = np.zeros((n_states, n_actions), np.float64)
        self.cfg, self.algo = cfg, algo
        self.rng = np.random.default_rng(seed)
        self.step = 0

    def encode(self, obs) -> np.ndarray:
        return np.asarray(obs, np.int64).reshape(-1)

    def to_env(self, a: np.ndarray) -> np.ndarray:
        return a

    def act(self, obs, explore: bool = False) -> np.ndarray:
        """obs: (n,) states -> (n,) actions."""
        obs = np.asarray(obs, np.int64)
        greedy = self.q[obs].argmax(axis=1)
        if not explore:
            return greedy
        eps = linear_epsilon(self.step, self.cfg.max_steps, self.cfg.exploration_fraction,
                             self.cfg.epsilon_end)
        rand = self.rng.random(len(obs)) < eps
        return np.where(rand, self.rng.integers(0, self.q.shape[1], len(obs)), greedy)

    def learn(self, s: int, a: int, r: float, s2: int, terminated: bool, a2: int) -> float:
        g = self.cfg.gamma
        if self.algo == "sarsa":
            target = sarsa_target(self.q, r, s2, a2, terminated, g)
        else:
            target = q_learning_target(self.q, r, s2, terminated, g)
        return td_update(self.q, s, a, target, self.cfg.lr)

    def policy_state(self) -> dict:
        return {"q": self.q.copy()}

    def state_dict(self) -> dict:
        return {"q": self.q.copy(), "rng": self.rng.bit_generator.state, "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.q[:] = state["q"]
        self.rng.bit_generator.state = state["rng"]
        self.step = state["step"]


def make(obs_space, act_space, cfg, seed: int) -> TabularAgent:
    return TabularAgent(int(obs_space.n), int(act_space.n), cfg, seed, cfg.algo)
