"""Distillation losses as pure functions of student and teacher logits.

Legend: N positions (any leading shape flattens to N), V vocabulary, k cached teacher entries.

Every function returns the *sum* over the positions that ``mask`` keeps (all when None), so the
training loop can normalise by the tokens of the whole optimizer step, like the LM loss.

- ``forward_kl``: KL(p_T || p_S), mode-covering; Hinton et al. 2015 soften both with a
  temperature tau and multiply by tau^2 so the gradient scale does not shrink as tau grows.
- ``reverse_kl``: KL(p_S || p_T), mode-seeking (MiniLLM, Gu et al. 2023).
- ``generalized_jsd``: beta KL(p_T || m) + (1 - beta) KL(p_S || m), m = beta p_T +
  (1 - beta) p_S (GKD, Agarwal et al. 2023, Eq. 1; TRL's convention). Its limits are the two
  KLs: beta -> 0 tends to beta x forward KL, beta -> 1 to (1 - beta) x reverse KL, so (like
  TRL) beta = 0 and beta = 1 return the plain forward and reverse KL.
- ``topk_forward_kl``: forward KL against a teacher stored as its top-k logits per position
  (renormalised over those k); with k = V it equals ``forward_kl``.
- ``soft_loss`` picks one of the first three by name; ``mix_with_ce`` mixes it with hard-label
  cross-entropy: (1 - alpha) x soft + alpha x CE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100
LOSSES = ("forward_kl", "reverse_kl", "jsd")


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1]).float()  # (N, V)


def _masked_sum(per_pos: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """per_pos (N,) summed where mask (any shape with N elements) is true."""
    if mask is None:
        return per_pos.sum()
    return per_pos[mask.reshape(-1).bool()].sum()


def _log_probs(student_logits, teacher_logits, temperature):
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    s = F.log_softmax(_flat(student_logits) / temperature, dim=-1)  # (N, V)
    t = F.log_softmax(_flat(teacher_logits) / temperature, dim=-1)  # (N, V)
    return s, t


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row, from log-probabilities: (N, V) -> (N,). 0 log 0 counts as 0."""
    p = log_p.exp()
    return torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(-1)


def forward_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *,
               temperature: float = 1.0, mask: torch.Tensor | None = None) -> torch.Tensor:
    """tau^2 x sum over kept positions of KL(softmax(t / tau) || softmax(s / tau))."""
    s, t = _log_probs(student_logits, teacher_logits, temperature)
    return temperature ** 2 * _masked_sum(_kl(t, s), mask)


def reverse_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *,
               temperature: float = 1.0, mask: torch.Tensor | None = None) -> torch.Tensor:
    """tau^2 x sum over kept positions of KL(softmax(s / tau) || softmax(t / tau))."""
    s, t = _log_probs(student_logits, teacher_logits, temperature)
    return temperature ** 2 * _masked_sum(_kl(s, t), mask)


def generalized_jsd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *,
                    beta: float = 0.5, temperature: float = 1.0,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    """tau^2 x sum of beta KL(p_T || m) + (1 - beta) KL(p_S || m), m = beta p_T + (1-beta) p_S.
    beta = 0 is the forward KL, beta = 1 the reverse KL (TRL's GKD convention)."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if beta == 0.0:
        return forward_kl(student_logits, teacher_logits, temperature=temperature, mask=mask)
    if beta == 1.0:
        return reverse_kl(student_logits, teacher_logits, temperature=temperature, mask=mask)
    s, t = _log_probs(student_logits, teacher_logits, temperature)
    b = torch.tensor(beta, dtype=s.dtype, device=s.device)
    log_m = torch.logsumexp(torch.stack([t + b.log(), s + torch.log1p(-b)]), dim=0)  # (N, V)
    per_pos = beta * _kl(t, log_m) + (1 - beta) * _kl(s, log_m)
    return temperature ** 2 * _masked_sum(per_pos, mask)


def topk_forward_kl(student_logits: torch.Tensor, teacher_ids: torch.Tensor,
                    teacher_logits: torch.Tensor, *, temperature: float = 1.0,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    """Forward KL against a sparse teacher: its logits (N, k) at token ids (N, k).

    The teacher's distribution is softmax(teacher_logits / tau) over its k entries (the tail it
    did not keep gets no mass); the student's log-probabilities come from its full softmax
    over V, gathered at those ids, so mass the student puts outside the k entries is still
    penalised through the normaliser. With k = V this is ``forward_kl`` exactly.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    s_all = F.log_softmax(_flat(student_logits) / temperature, dim=-1)  # (N, V)
    ids = teacher_ids.reshape(-1, teacher_ids.shape[-1]).long()  # (N, k)
    s = s_all.gather(-1, ids)  # (N, k)
    t = F.log_softmax(_flat(teacher_logits) / temperature, dim=-1)  # (N, k)
    return temperature ** 2 * _masked_sum(_kl(t, s), mask)


def hard_ce(student_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy against targets (N,) (-100 = not trained), at temperature 1."""
    return F.cross_entropy(_flat(student_logits), targets.reshape(-1), ignore_index=IGNORE,
                           reduction="sum")


def soft_loss(name: str, student_logits, teacher_logits, *, temperature: float = 1.0,
              beta: float = 0.5, mask=None) -> torch.Tensor:
    """The soft (teacher-matching) term by name: forward_kl | reverse_kl | jsd."""
    if name == "forward_kl":
        return forward_kl(student_logits, teacher_logits, temperature=temperature, mask=mask)
    if name == "reverse_kl":
        return reverse_kl(student_logits, teacher_logits, temperature=temperature, mask=mask)
    if name == "jsd":
        return generalized_jsd(student_logits, teacher_logits, beta=beta,
                               temperature=temperature, mask=mask)
    raise ValueError(f"unknown distillation loss {name!r}; expected one of {', '.join(LOSSES)}")


def mix_with_ce(soft: torch.Tensor, student_logits: torch.Tensor, targets: torch.Tensor, *,
                alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(1 - alpha) x soft + alpha x CE(targets); returns (loss, ce) with both summed."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if alpha == 0.0:
        return soft, torch.zeros((), device=soft.device)
    ce = hard_ce(student_logits, targets)
    return (1 - alpha) * soft + alpha * ce, ce
