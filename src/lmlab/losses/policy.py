"""Policy-gradient losses for PPO and GRPO, as pure functions of per-token log-probs.

- ``ppo_policy_loss``: the clipped surrogate -min(rho A, clip(rho, 1-eps_lo, 1+eps_hi) A) with
  rho = pi / pi_old, averaged over response tokens; with the fraction of tokens whose ratio
  was clipped and the approximate KL(pi_old || pi) (k3, Schulman 2020).
- ``value_loss``: 0.5 max((V - R)^2, (V_clip - R)^2) with V_clip = V_old + clip(V - V_old, +-c).
- ``entropy_from_logits``: H = logsumexp(z) - sum softmax(z) z per position.
- ``kl_estimate``: per-token estimators of KL(pi || pi_ref) from sampled tokens:
  k1 = log pi - log pi_ref, k2 = 0.5 (log pi - log pi_ref)^2, k3 = exp(-d) + d - 1 with
  d = log pi - log pi_ref (unbiased, always >= 0).
- ``grpo_loss``: the clipped surrogate with a sequence-level advantage plus beta * k3, reduced
  per sequence then averaged over sequences (``level="sequence"``, TRL's "grpo") or averaged
  over all tokens of the batch (``level="token"``, TRL's "bnpo" / DAPO).

Legend: N sequences, T response positions, V vocabulary; masks are 1 on real response tokens.
Checked by hand-computed numbers and against TRL 1.16's ``GRPOTrainer._compute_loss``
(tests/losses/test_policy.py).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from lmlab.rl.advantages import masked_mean

KL_ESTIMATORS = ("k1", "k2", "k3")


class PolicyLoss(NamedTuple):
    loss: torch.Tensor  # scalar, differentiable
    clip_frac: torch.Tensor  # fraction of response tokens whose ratio was clipped (detached)
    approx_kl: torch.Tensor  # mean k3 estimate of KL(pi_old || pi) over tokens (detached)


class GRPOLoss(NamedTuple):
    loss: torch.Tensor
    clip_frac: torch.Tensor
    approx_kl: torch.Tensor
    kl: torch.Tensor  # mean k3 KL(pi || pi_ref) per token (detached; 0 without a reference)


def _clipped_surrogate(logp, old_logp, adv, eps_low, eps_high):
    """Per-token loss (N, T) and the 'clip was active' mask."""
    ratio = torch.exp(logp - old_logp)
    clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high)
    loss = -torch.min(ratio * adv, clipped * adv)
    active = ((ratio < 1.0 - eps_low) & (adv < 0)) | ((ratio > 1.0 + eps_high) & (adv > 0))
    return loss, active


def _approx_kl(logp, old_logp, mask):
    d = (old_logp - logp).detach()  # log pi_old - log pi at tokens sampled from pi_old
    return masked_mean(torch.exp(-d) + d - 1.0, mask)


def ppo_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                    mask: torch.Tensor, *, clip_eps: float = 0.2,
                    clip_eps_high: float | None = None) -> PolicyLoss:
    """Token-averaged clipped surrogate; all inputs (N, T)."""
    eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    per_token, active = _clipped_surrogate(logp, old_logp, advantages, clip_eps, eps_high)
    return PolicyLoss(masked_mean(per_token, mask), masked_mean(active.float(), mask).detach(),
                      _approx_kl(logp, old_logp, mask))


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               mask: torch.Tensor, *, clip: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, fraction of tokens where the clipped term was the larger); inputs (N, T).
    ``clip=0`` turns value clipping off."""
    unclipped = (values - returns) ** 2
    if clip <= 0:
        return 0.5 * masked_mean(unclipped, mask), torch.zeros(())
    v_clip = old_values + (values - old_values).clamp(-clip, clip)
    clipped = (v_clip - returns) ** 2
    return (0.5 * masked_mean(torch.max(unclipped, clipped), mask),
            masked_mean((clipped > unclipped).float(), mask).detach())


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) per position: (..., V) -> (...)."""
    logits = logits.float()
    p = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (p * logits).sum(-1)


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k3") -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) at tokens sampled from pi (same shape)."""
    d = logp - ref_logp
    if kind == "k1":
        return d
    if kind == "k2":
        return 0.5 * d ** 2
    if kind == "k3":
        return torch.exp(-d) + d - 1.0
    raise ValueError(f"kl estimator must be one of {KL_ESTIMATORS}, got {kind!r}")


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, *, ref_logp: torch.Tensor | None = None, beta: float = 0.0,
              clip_eps: float = 0.2, clip_eps_high: float | None = None,
              level: str = "sequence") -> GRPOLoss:
    """GRPO over (N, T) log-probs with one advantage per sequence (N,).

    level="sequence": mean over each sequence's tokens, then over sequences (every completion
    weighs the same, so tokens of short ones weigh more); level="token": one mean over all
    tokens of the batch (every token weighs the same; DAPO's fix for long-answer bias).
    """
    eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    per_token, active = _clipped_surrogate(logp, old_logp, advantages[:, None], clip_eps,
                                           eps_high)
    kl = torch.zeros(())
    if beta != 0.0:
        if ref_logp is None:
            raise ValueError("beta != 0 needs the reference log-probs")
        per_kl = kl_estimate(logp, ref_logp, "k3")
        per_token = per_token + beta * per_kl
        kl = masked_mean(per_kl, mask).detach()
    elif ref_logp is not None:
        kl = masked_mean(kl_estimate(logp, ref_logp, "k3"), mask).detach()
    if level == "sequence":
        loss = masked_mean(per_token, mask, dim=1).mean()
    elif level == "token":
        loss = masked_mean(per_token, mask)
    else:
        raise ValueError(f"level must be 'sequence' or 'token', got {level!r}")
    return GRPOLoss(loss, masked_mean(active.float(), mask).detach(),
                    _approx_kl(logp, old_logp, mask), kl)
