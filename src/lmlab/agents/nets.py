"""Small networks for the RL lab, their numpy mirrors for acting, and the soft target update.

Acting is one observation batch per environment step, so its cost is per-call overhead, not
arithmetic: ``NumpyMLP`` runs the forward pass on numpy *views* of a torch MLP's weights
(``Tensor.numpy()`` shares memory and the optimizers update in place, so the views never go
stale) at a fraction of torch's per-call cost for 64-wide layers. Learning stays in torch.

``Ensemble`` holds K same-shaped MLPs as stacked weights (K, in, out) and runs them in one
batched matmul per layer: TD3's and SAC's twin critics in one call.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def mlp(sizes: list[int], activation: str = "relu", out_gain: float | None = None,
        orthogonal: bool = False) -> nn.Sequential:
    """Linear layers with ``activation`` between them (none after the last). ``orthogonal``:
    orthogonal init with gain sqrt(2) on hidden layers and ``out_gain`` on the last, zero
    biases (the PPO/A2C convention of Stable-Baselines3 and CleanRL)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        lin = nn.Linear(a, b)
        last = i == len(sizes) - 2
        if orthogonal:
            nn.init.orthogonal_(lin.weight, gain=(out_gain if last else math.sqrt(2)))
            nn.init.zeros_(lin.bias)
        layers.append(lin)
        if not last:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class NumpyMLP:
    """The forward pass of an ``mlp`` in numpy, on views of its (live) torch weights."""

    def __init__(self, net: nn.Sequential):
        self.layers = []
        for m in net:
            if isinstance(m, nn.Linear):
                self.layers.append([m.weight.detach().numpy().T, m.bias.detach().numpy(), None])
            else:
                self.layers[-1][2] = np.tanh if isinstance(m, nn.Tanh) else _relu

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for w, b, act in self.layers:
            x = x @ w + b
            if act is not None:
                x = act(x)
        return x


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0, out=x)


def relu_mlp_forward(net: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """The forward pass of a ReLU ``mlp`` without autograd: [input, hidden..., output]."""
    acts = [x]
    linears = [m for m in net if isinstance(m, nn.Linear)]
    for i, lin in enumerate(linears):
        x = torch.addmm(lin.bias, x, lin.weight.t())
        if i < len(linears) - 1:
            x = x.clamp_min_(0.0)
        acts.append(x)
    return acts


def relu_grad(d: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """d where the ReLU's output h > 0, else 0: one kernel (autograd's own ``ReluBackward``),
    where ``d * (h > 0)`` makes a bool mask and then a float copy of it."""
    return torch.ops.aten.threshold_backward(d, h, 0.0)


def relu_mlp_backward(net: nn.Sequential, acts: list[torch.Tensor],
                      d_out: torch.Tensor) -> list[torch.Tensor]:
    """Gradients of sum(d_out * output) for every parameter of a ReLU ``mlp``, in the order of
    ``net.parameters()``, by hand (the chain rule through out = x W^T + b, h = relu(z)):
    dW = d^T x, db = sum_rows d, dx = (d W) * (h > 0). About a tenth of the ops autograd
    records for the same small MLP (tested equal to autograd)."""
    linears = [m for m in net if isinstance(m, nn.Linear)]
    grads: list[torch.Tensor] = []
    d = d_out
    for i in range(len(linears) - 1, -1, -1):
        x = acts[i]
        grads += [d.sum(0), torch.mm(d.t(), x)]
        if i:
            d = relu_grad(torch.mm(d, linears[i].weight), x)
    return grads[::-1]


class Ensemble(nn.Module):
    """K MLPs of the same shape, evaluated together: (B, in) or (K, B, in) -> (K, B, out).
    Each member is initialised like ``nn.Linear`` (uniform in +-1/sqrt(fan_in))."""

    def __init__(self, k: int, sizes: list[int]):
        super().__init__()
        self.k = k
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in itertools.pairwise(sizes):
            bound = 1.0 / math.sqrt(a)
            self.weights.append(nn.Parameter(torch.empty(k, a, b).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(k, 1, b).uniform_(-bound, bound)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.k, *x.shape)  # (K, B, in)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)  # (K, B, out)
            if i < last:
                x = torch.relu(x)
        return x


def ensemble_forward(ens: Ensemble, x: torch.Tensor) -> list[torch.Tensor]:
    """``ens(x)`` without autograd for a (B, in) input: [x, hidden..., output], hidden
    (K, B, width) after the ReLU, output (K, B, out)."""
    acts = [x]
    h = x.unsqueeze(0).expand(ens.k, *x.shape)
    last = len(ens.weights) - 1
    for i, (w, b) in enumerate(zip(ens.weights, ens.biases)):
        h = torch.baddbmm(b, h, w)
        if i < last:
            h = h.clamp_min_(0.0)
        acts.append(h)
    return acts


def ensemble_backward(ens: Ensemble, acts: list[torch.Tensor], d_out: torch.Tensor,
                      params: bool = True, input_cols: slice | None = None):
    """By hand, for ``sum(d_out * ens(x))`` (d_out: (K, B, out)) through ``ensemble_forward``'s
    ``acts``: (the gradients of every parameter in the order of ``ens.parameters()`` - all
    weights, then all biases - or None without ``params``; the gradient of the input's columns
    ``input_cols`` summed over the K members, (B, cols), or None). Per layer out = h W + b:
    dW = h^T d, db = sum_rows d, dh = (d W^T) * (h > 0); nothing more is computed than asked
    (the actor's loss needs only d/d action, not the critics' weight gradients)."""
    n = len(ens.weights)
    dw: list[torch.Tensor] = [None] * n  # type: ignore[list-item]
    db: list[torch.Tensor] = [None] * n  # type: ignore[list-item]
    d, dx = d_out, None
    for i in range(n - 1, -1, -1):
        w = ens.weights[i]
        if params:
            h = acts[i] if i else acts[0].t().unsqueeze(0).expand(ens.k, *acts[0].t().shape)
            dw[i] = torch.bmm(h.transpose(1, 2), d) if i else torch.bmm(h, d)
            db[i] = d.sum(1, keepdim=True)
        if i:
            d = relu_grad(torch.bmm(d, w.transpose(1, 2)), acts[i])
        elif input_cols is not None:
            dx = torch.bmm(d, w[:, input_cols].transpose(1, 2)).sum(0)
    return (dw + db if params else None), dx


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging, in place: target <- (1 - tau) target + tau source (tau=1: a copy)."""
    t = list(target.parameters())
    torch._foreach_lerp_(t, list(source.parameters()), tau)


def frozen_copy(net: nn.Module) -> nn.Module:
    """A copy of ``net`` for a target network: no gradients, never trained directly."""
    import copy

    target = copy.deepcopy(net)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


def adam(params, lr: float, eps: float = 1e-8) -> torch.optim.Adam:
    """Adam with the fused update: one kernel per parameter for the whole step (on CPU torch
    otherwise loops over parameters in Python, and its multi-tensor path falls back to ~20
    ops per parameter: a cost per update that small nets notice; fused cut the aten ops of a
    64-wide MLP's forward + backward + step from 338 to 220)."""
    return torch.optim.Adam(params, lr=lr, eps=eps, fused=True)


def clip_grads(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``clip_grad_norm_`` with its multi-tensor path (CPU torch defaults to one norm and one
    multiply per parameter)."""
    return torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)


def obs_size(space) -> int:
    """Inputs an observation becomes: a Box flattened, a Discrete one-hot."""
    import gymnasium as gym

    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    return int(np.prod(space.shape))


def encode_obs(space, obs: np.ndarray) -> np.ndarray:
    """(n, *shape) observations -> (n, obs_size) float32 (one-hot for Discrete)."""
    import gymnasium as gym

    if isinstance(space, gym.spaces.Discrete):
        out = np.zeros((len(obs), int(space.n)), np.float32)
        out[np.arange(len(obs)), np.asarray(obs, np.int64) - int(space.start)] = 1.0
        return out
    return np.asarray(obs, np.float32).reshape(len(obs), -1)
