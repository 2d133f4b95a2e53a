"""SAC (Haarnoja et al. 2018, with the learned temperature of the second paper): a squashed
Gaussian actor a = tanh(u), u ~ N(mu(s), sigma(s)), twin critics and their Polyak targets.

critic: 0.5 sum_k MSE(Q_k(s, a), r + gamma (1 - d) [min_k Q_k'(s', a') - alpha log pi(a'|s')])
actor:  mean(alpha log pi(a|s) - min_k Q_k(s, a)), a ~ pi(.|s) reparameterised
alpha:  sac_alpha_loss(log alpha, log pi(a|s), target entropy = -dim(A)) unless ``alpha`` is
        fixed. Alpha handling as in Stable-Baselines3: the alpha from before this update's
        temperature step is used in its critic and actor losses (log alpha steps with the
        actor's optimizer at the end, which is the same update as SB3's step before them).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from lmlab.agents.continuous import (
    BoxActions,
    critic_input,
    load_optim_state,
    optim_state,
)
from lmlab.agents.nets import (
    Ensemble,
    NumpyMLP,
    adam,
    ensemble_backward,
    ensemble_forward,
    frozen_copy,
    mlp,
    obs_size,
    relu_grad,
    relu_mlp_backward,
    relu_mlp_forward,
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


def critic_grad(q: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d/dq of the critics' loss 0.5 sum_k mean_b (q_kb - y_b)^2: (q - y) / B, (K, B)."""
    return (q - y).div_(q.shape[1])


def min_q_grad(q: torch.Tensor) -> torch.Tensor:
    """d/dq of -mean_b min_k q_kb (the actor's loss without its entropy term): -1/B on each
    row's smallest critic, 0 on the others. (K, B). ``min_q_action_grad`` uses it sparsely."""
    pick = q.argmin(0, keepdim=True)  # (1, B)
    return torch.zeros_like(q).scatter_(0, pick, -1.0 / q.shape[1])


def min_q_action_grad(ens: Ensemble, acts: list[torch.Tensor], cols: slice) -> torch.Tensor:
    """d/d input[:, cols] of -mean_b min_k Q_k(x_b) from ``ensemble_forward``'s ``acts``: what
    ``ensemble_backward(ens, acts, min_q_grad(q), params=False, input_cols=cols)`` gives, with
    each row taken back through its smallest critic only (the others' gradient there is 0):
    half the backward matmuls for twin critics."""
    q = acts[-1].squeeze(-1)  # (K, B)
    n, last = q.shape[1], len(ens.weights) - 1
    pick = q.argmin(0)
    out = torch.empty(n, len(range(*cols.indices(acts[0].shape[1]))))
    for k in range(ens.k):
        rows = (pick == k).nonzero().squeeze(1)
        d = ens.weights[last][k].t().expand(len(rows), -1) * (-1.0 / n)  # (R, width)
        for i in range(last, 0, -1):
            d = relu_grad(d if i == last else torch.mm(d, ens.weights[i][k].t()),
                          acts[i][k].index_select(0, rows))
        out.index_copy_(0, rows, torch.mm(d, ens.weights[0][k][cols].t()) if last else d[:, cols])
    return out


def squashed_grads(a: torch.Tensor, noise: torch.Tensor, log_std: torch.Tensor,
                   g_a: torch.Tensor, w: float | torch.Tensor):
    """(d/d mu, d/d log_std) of sum(g_a * a) + w sum_b log pi(a_b) for a = tanh(u),
    u = mu + noise, noise = exp(clamp(log_std)) eps. With log pi = sum_i [-eps_i^2 / 2 -
    log_std_i - log sqrt(2 pi) - log(1 - tanh(u_i)^2)]: d log pi / du = 2 tanh(u),
    d a / du = 1 - a^2, du / d log_std = noise, and the clamp passes no gradient outside
    ``LOG_STD``."""
    d_u = g_a * (1.0 - a * a) + 2.0 * w * a
    inside = (log_std >= LOG_STD[0]) & (log_std <= LOG_STD[1])
    return d_u, (d_u * noise - w) * inside


def _set_grads(net: torch.nn.Module, grads: list[torch.Tensor]) -> None:
    for p, g in zip(net.parameters(), grads):
        p.grad = g


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
        # log alpha steps with the actor, at the end of an update (this update's losses use
        # the alpha from before its step, as SB3's do): one optimizer call less per update
        self.opt = {"actor": adam([*self.actor.parameters(), self.log_alpha], cfg.lr),
                    "critic": adam(self.critic.parameters(), cfg.lr)}
        self._polyak = (list(self.critic_t.parameters()), list(self.critic.parameters()))
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

    @torch.no_grad()
    def update(self, b: dict) -> dict:
        """One gradient step of the temperature, the critics and the actor, every gradient
        taken by hand (``ensemble_backward``, ``relu_mlp_backward``, ``critic_grad``,
        ``min_q_action_grad``, ``squashed_grads``: the same numbers as autograd, tested) - autograd's
        per-op cost was most of an update; both actor passes (s and s') are one forward."""
        c, n = self.cfg, len(b["obs"])
        acts = relu_mlp_forward(self.actor, torch.cat([b["obs"], b["next_obs"]]))
        mu, log_std = acts[-1].chunk(2, dim=-1)
        ls = log_std.clamp(*LOG_STD)
        std = ls.exp()
        noise = std * torch.randn_like(mu)
        u = mu + noise
        a_all, logp_all = torch.tanh(u), squashed_logp(u, mu, ls)
        a_pi, logp, a2, logp2 = a_all[:n], logp_all[:n], a_all[n:], logp_all[n:]
        alpha = self.log_alpha.detach().exp()
        metrics = {"alpha": alpha[0]}
        if self.learn_alpha:
            metrics["alpha_loss"] = sac_alpha_loss(self.log_alpha.detach(), logp,
                                                   self.target_entropy)
            self.log_alpha.grad = -(logp.mean() + self.target_entropy).reshape(1)
        q_t = ensemble_forward(self.critic_t, critic_input(b["next_obs"], a2))[-1].squeeze(-1)
        y = td_target(b["rew"], clipped_double_q(q_t[0], q_t[1], logp2, alpha), b["term"],
                      c.gamma)
        ca = ensemble_forward(self.critic, critic_input(b["obs"], b["act"]))
        q = ca[-1].squeeze(-1)  # (2, B)
        grads, _ = ensemble_backward(self.critic, ca, critic_grad(q, y).unsqueeze(-1))
        _set_grads(self.critic, grads)
        self.opt["critic"].step()
        pa = ensemble_forward(self.critic, critic_input(b["obs"], a_pi))  # the new critics
        q_pi = pa[-1].squeeze(-1)  # (2, B)
        g_a = min_q_action_grad(self.critic, pa, slice(-self.box.dim, None))
        d_mu, d_ls = squashed_grads(a_pi, noise[:n], log_std[:n], g_a, alpha / n)
        _set_grads(self.actor, relu_mlp_backward(self.actor, [x[:n] for x in acts],
                                                 torch.cat([d_mu, d_ls], dim=1)))
        self.opt["actor"].step()  # and log alpha
        torch._foreach_lerp_(*self._polyak, c.tau)  # nets.soft_update on cached lists
        self.updates += 1
        metrics.update(critic_loss=0.5 * (q - y).square().mean(1).sum(),
                       actor_loss=(alpha * logp - q_pi.min(0).values).mean(),
                       q=q[0].mean(), entropy=-logp.mean())
        return dict(zip(metrics, torch.stack(list(metrics.values())).tolist()))

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
