"""Advantages for the online stages, as pure functions.

- ``gae``: generalised advantage estimation (Schulman et al. 2016) over per-token rewards and
  values of right-padded responses (PPO), and over the (N environments, T steps) rollouts of
  the classic RL lab (``lmlab.agents``: VPG, A2C, PPO) with episode ends and a bootstrap.
- ``whiten``: masked normalisation to mean 0 / std 1 (PPO whitens advantages per rollout batch).
- ``group_advantages``: GRPO's (r - mean of the group) / (std of the group + eps) (Shao et al.
  2024), with TRL's choices: unbiased std, eps 1e-4, scale by group | batch | none.
- ``rloo_advantages``: REINFORCE leave-one-out (Ahmadian et al. 2024): r_i minus the mean
  reward of the other k-1 completions of the same prompt.

Legend: N sequences (prompt-major: the k completions of prompt p are rows p*k .. p*k+k-1),
T response positions, k completions per prompt. Masks are 1 on real response tokens; a
response's real tokens come first (right padding).
"""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of the masked entries (Bessel-corrected by default, as TRL's PPO did)."""
    mask = mask.to(x.dtype)
    n = mask.sum()
    var = masked_mean((x - masked_mean(x, mask)) ** 2, mask)
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def whiten(x: torch.Tensor, mask: torch.Tensor, *, shift_mean: bool = True,
           eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) over the masked entries; masked-out entries become 0.
    ``shift_mean=False`` only rescales (used for rewards, whose sign carries meaning)."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask.to(x.dtype)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, *, gamma: float,
        lam: float, dones: torch.Tensor | None = None,
        last_value: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns), both (N, T), zero where ``mask`` is 0.

    delta_t = r_t + gamma * c_t * V(t+1) - V(t); A_t = delta_t + gamma * lam * c_t * A_{t+1};
    returns = A + V (the value targets). c_t = 1 when step t+1 continues step t's episode.

    LLM responses (the default): c_t = mask(t+1), so V past the last real token is 0 (the
    episode ends there). Classic RL rollouts of N environments over T steps (lmlab.agents) pass
    ``dones`` (N, T), 1 where the episode ended at step t (c_t = 1 - done_t), and
    ``last_value`` (N,), V of the observation after the last step (the bootstrap).
    """
    mask = mask.to(values.dtype)
    N, T = rewards.shape
    zero = torch.zeros(N, 1, dtype=values.dtype, device=values.device)
    cont = torch.cat([mask[:, 1:], zero], 1) if dones is None else 1.0 - dones.to(values.dtype)
    boot = zero if last_value is None else last_value.to(values.dtype).view(N, 1)
    nxt = torch.cat([values[:, 1:], boot], 1)  # V(t+1)
    delta = (rewards + gamma * cont * nxt - values) * mask
    decay = gamma * lam * cont * mask
    adv = torch.zeros_like(values)
    last = zero[:, 0]
    for t in reversed(range(T)):
        last = delta[:, t] + decay[:, t] * last
        adv[:, t] = last
    return adv, (adv + values) * mask


def _groups(rewards: torch.Tensor, k: int) -> torch.Tensor:
    if rewards.dim() != 1 or rewards.numel() % k:
        raise ValueError(f"rewards must be (N,) with N a multiple of k={k}, got "
                         f"{tuple(rewards.shape)}")
    return rewards.view(-1, k)  # (P, k)


def group_advantages(rewards: torch.Tensor, k: int, *, scale: str = "group",
                     eps: float = 1e-4) -> torch.Tensor:
    """GRPO: (r - group mean) / (std + eps), (N,) -> (N,). ``scale``: group (std within each
    prompt's k completions), batch (std over all N), none (only centre). A group whose k rewards
    are equal gets advantage 0: it carries no signal about which completion is better."""
    g = _groups(rewards, k)
    centred = (g - g.mean(dim=1, keepdim=True)).reshape(-1)
    if scale == "none":
        return centred
    if scale == "group":
        std = (g.std(dim=1, keepdim=True) if k > 1 else torch.zeros_like(g)).expand_as(g)
        std = std.reshape(-1)
    elif scale == "batch":
        std = rewards.std() if rewards.numel() > 1 else torch.zeros(())
    else:
        raise ValueError(f"scale must be group, batch or none, got {scale!r}")
    return centred / (std + eps)


def rloo_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """r_i - mean_{j != i} r_j within each group, (N,) -> (N,); needs k >= 2."""
    if k < 2:
        raise ValueError("RLOO needs at least 2 completions per prompt")
    g = _groups(rewards, k)
    baseline = (g.sum(dim=1, keepdim=True) - g) / (k - 1)
    return (g - baseline).reshape(-1)
