"""DQN (Mnih et al. 2015) with a replay buffer, a target network and double DQN (van Hasselt
et al. 2016; ``double=true``).

loss = Huber(Q(s, a) - y), y = r + gamma (1 - terminated) max_a' Q_target(s', a')
(double: Q_target(s', argmax_a' Q(s', a'))); the target network is copied (``tau`` = 1) or
Polyak-averaged every ``target_update`` environment steps; epsilon-greedy acting with epsilon
decaying linearly from 1 to ``epsilon_end`` over ``exploration_fraction`` of the steps
(``epsilon_draw=env``: one coin per env; ``step``: one coin for the whole vector step, as
Stable-Baselines3 draws it). Stabilisers: ``schedule=linear`` (lr decays to 0 over the run,
set before each training round as SB3 does), ``tau`` < 1 (Polyak target), ``loss=mse``.
Defaults are Stable-Baselines3's (Huber loss, Adam, grad-norm clip 10).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lmlab.agents.nets import (
    NumpyMLP,
    adam,
    clip_grads,
    encode_obs,
    frozen_copy,
    mlp,
    obs_size,
    relu_mlp_backward,
    relu_mlp_forward,
    soft_update,
)
from lmlab.agents.policies import linear, set_lr
from lmlab.agents.tabular import linear_epsilon
from lmlab.losses.td import double_q_target, td_target

ACTIONS = ("discrete",)
TABULAR = False
FAMILY = "offpolicy"
DEFAULTS = {"lr": 1e-4, "gamma": 0.99, "batch_size": 32, "buffer_size": 1_000_000,
            "learning_starts": 100, "train_freq": 4, "gradient_steps": 1,
            "target_update": 10_000, "tau": 1.0, "exploration_fraction": 0.1,
            "epsilon_end": 0.05, "max_grad_norm": 10.0, "hidden": [64, 64], "n_envs": 1}


def dqn_loss(q: torch.Tensor, target: torch.Tensor, kind: str = "huber") -> torch.Tensor:
    """Huber (smooth L1, delta 1) or squared error between Q(s, a) and its TD target,
    averaged: (B,), (B,)."""
    return F.smooth_l1_loss(q, target) if kind == "huber" else F.mse_loss(q, target)


def huber_grad(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d dqn_loss / d q: clip(q - target, -1, 1) / B (the Huber loss is quadratic inside
    |error| < 1 and linear outside)."""
    return (q - target).clamp_(-1.0, 1.0).div_(len(q))


def mse_grad(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d dqn_loss(kind="mse") / d q: 2 (q - target) / B."""
    return (q - target).mul_(2.0 / len(q))


def epsilon_greedy(greedy: np.ndarray, eps: float, n_actions: int, rng, draw: str) -> np.ndarray:
    """Epsilon-greedy over a vector step's greedy actions. ``draw="env"``: one coin per env
    (``rng.random(n)``, then ``rng.integers`` for all n); ``"step"``: one coin for the whole
    step (``rng.random()``; heads: every env gets a random action), as Stable-Baselines3's
    ``DQN.predict`` does."""
    n = len(greedy)
    if draw == "step":
        return rng.integers(0, n_actions, n) if rng.random() < eps else greedy
    rand = rng.random(n) < eps
    return np.where(rand, rng.integers(0, n_actions, n), greedy)


class DQNAgent:
    act_dtype = np.int64
    act_shape: tuple = ()

    def __init__(self, obs_space, act_space, cfg, seed: int):
        self.cfg, self.obs_space, self.n_actions = cfg, obs_space, int(act_space.n)
        self.q = mlp([obs_size(obs_space), *cfg.hidden, self.n_actions])
        self.q_target = frozen_copy(self.q)
        self.params = list(self.q.parameters())
        self.opt = adam(self.params, cfg.lr)
        self.q_np = NumpyMLP(self.q)
        self.rng = np.random.default_rng([seed, 2])
        self.step = self.updates = 0
        self.last_sync = 0

    def encode(self, obs) -> np.ndarray:
        return encode_obs(self.obs_space, obs)

    def to_env(self, a: np.ndarray) -> np.ndarray:
        return a

    def random_action(self, n: int, rng) -> np.ndarray:
        return rng.integers(0, self.n_actions, n)

    def epsilon(self) -> float:
        c = self.cfg
        return linear_epsilon(self.step, c.max_steps, c.exploration_fraction, c.epsilon_end)

    def on_step(self) -> None:
        """After each vector step (before that step's training, as Stable-Baselines3 does):
        sync the target network every ``target_update`` environment steps, counted as SB3
        counts them: every max(target_update // n_envs, 1) vector steps (n_envs 4,
        target_update 10: every 8 env steps)."""
        n = self.cfg.n_envs
        if (self.step // n) % max(self.cfg.target_update // n, 1) == 0:
            soft_update(self.q_target, self.q, self.cfg.tau)
            self.last_sync = self.step

    def act(self, obs: np.ndarray, explore: bool = False) -> np.ndarray:
        greedy = self.q_np(obs).argmax(axis=1)
        if not explore:
            return greedy
        return epsilon_greedy(greedy, self.epsilon(), self.n_actions, self.rng,
                              getattr(self.cfg, "epsilon_draw", "env"))

    def round_start(self) -> None:
        """Before a training round: the learning rate at this step (``schedule=linear``: lr x
        the fraction of steps left, as SB3's schedule sets it once per ``train()``)."""
        c = self.cfg
        if getattr(c, "schedule", "constant") != "constant":
            set_lr(self.opt, linear(c.lr, self.step / c.max_steps, c.schedule))

    def update(self, b: dict) -> dict:
        """One gradient step. The gradient of the Huber loss through the ReLU MLP is taken by
        hand (``huber_grad``, ``nets.relu_mlp_backward``: the same numbers as autograd, tested,
        at a fraction of its per-op cost on these small nets)."""
        c = self.cfg
        with torch.no_grad():
            q_next_t = relu_mlp_forward(self.q_target, b["next_obs"])[-1]  # (B, A)
            if c.double:
                y = double_q_target(b["rew"], relu_mlp_forward(self.q, b["next_obs"])[-1],
                                    q_next_t, b["term"], c.gamma)
            else:
                y = td_target(b["rew"], q_next_t.max(dim=1).values, b["term"], c.gamma)
            acts = relu_mlp_forward(self.q, b["obs"])
            a = b["act"].long().unsqueeze(1)
            q = acts[-1].gather(1, a).squeeze(1)  # (B,)
            kind = getattr(c, "loss", "huber")
            loss = dqn_loss(q, y, kind)
            grad = huber_grad(q, y) if kind == "huber" else mse_grad(q, y)
            d_out = torch.zeros_like(acts[-1]).scatter_(1, a, grad.unsqueeze(1))
            for p, g in zip(self.params, relu_mlp_backward(self.q, acts, d_out)):
                p.grad = g
        clip_grads(self.params, c.max_grad_norm)
        self.opt.step()
        self.updates += 1
        return {"loss": loss.item(), "q": q.mean().item(), "epsilon": self.epsilon(),
                "lr": self.opt.param_groups[0]["lr"]}

    def state_dict(self) -> dict:
        return {"q": self.q.state_dict(), "q_target": self.q_target.state_dict(),
                "opt": self.opt.state_dict(), "rng": self.rng.bit_generator.state,
                "step": self.step, "updates": self.updates, "last_sync": self.last_sync}

    def load_state_dict(self, s: dict) -> None:
        self.q.load_state_dict(s["q"])
        self.q_target.load_state_dict(s["q_target"])
        self.opt.load_state_dict(s["opt"])
        self.rng.bit_generator.state = s["rng"]
        self.step, self.updates, self.last_sync = s["step"], s["updates"], s["last_sync"]

    def policy_state(self) -> dict:
        return {"q": self.q.state_dict()}


def make(obs_space, act_space, cfg, seed: int) -> DQNAgent:
    return DQNAgent(obs_space, act_space, cfg, seed)
