"""Preference losses as pure functions of sequence log-probabilities.

Every paired loss takes ``PairLogps`` (summed completion log-probs of the policy, their token
counts, and - for the reference-based losses - the reference's) and ``PrefParams``, and returns
``LossOut``: per-pair losses (B,) and the implied chosen / rejected rewards (B,), detached, from
which the objective logs reward accuracy and margins. ``PAIR_LOSSES`` maps a config name to its
function, so the training loop never branches on the loss name. KTO is unpaired and has its own
signature (``kto``).

Legend: B pairs, N unpaired completions. Log-probs are sums over completion tokens (prompt
tokens masked); ``*_tokens`` are the completion lengths that turn sums into averages.

Each function is checked by hand-computed values and against TRL 1.16 on the same log-probs
(tests/losses/test_preference.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PairLogps:
    chosen: torch.Tensor  # (B,) policy log p(y_w | x), summed over completion tokens
    rejected: torch.Tensor  # (B,) policy log p(y_l | x)
    chosen_tokens: torch.Tensor  # (B,) |y_w|
    rejected_tokens: torch.Tensor  # (B,) |y_l|
    ref_chosen: torch.Tensor | None = None  # (B,) reference log p(y_w | x)
    ref_rejected: torch.Tensor | None = None  # (B,) reference log p(y_l | x)


@dataclass(frozen=True)
class PrefParams:
    beta: float = 0.1  # inverse temperature of the implied reward (IPO: tau; SimPO/ORPO: scale)
    label_smoothing: float = 0.0  # cDPO: probability that a pair's label is flipped
    simpo_gamma: float = 0.5  # SimPO: target reward margin gamma
    desirable_weight: float = 1.0  # KTO: weight of desirable completions
    undesirable_weight: float = 1.0  # KTO: weight of undesirable completions


class LossOut(NamedTuple):
    losses: torch.Tensor  # (B,) per pair
    chosen_rewards: torch.Tensor  # (B,) detached
    rejected_rewards: torch.Tensor  # (B,) detached


def _logratios(lp: PairLogps) -> tuple[torch.Tensor, torch.Tensor]:
    if lp.ref_chosen is None or lp.ref_rejected is None:
        raise ValueError("this loss needs reference log-probs (ref_chosen, ref_rejected)")
    return lp.chosen - lp.ref_chosen, lp.rejected - lp.ref_rejected


def _averages(lp: PairLogps) -> tuple[torch.Tensor, torch.Tensor]:
    return lp.chosen / lp.chosen_tokens.clamp(min=1), lp.rejected / lp.rejected_tokens.clamp(min=1)


def _ref_rewards(lp: PairLogps, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    c, r = _logratios(lp)
    return beta * c.detach(), beta * r.detach()


def dpo(lp: PairLogps, p: PrefParams) -> LossOut:
    """DPO (Rafailov et al. 2023, eq. 7): -log sigmoid(beta * (h_w - h_l)), h = log pi/pi_ref."""
    c, r = _logratios(lp)
    return LossOut(-F.logsigmoid(p.beta * (c - r)), *_ref_rewards(lp, p.beta))


def cdpo(lp: PairLogps, p: PrefParams) -> LossOut:
    """Conservative DPO (Mitchell 2023): the DPO loss against labels flipped with probability
    eps = label_smoothing: -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)."""
    c, r = _logratios(lp)
    z = p.beta * (c - r)
    eps = p.label_smoothing
    return LossOut(-(1 - eps) * F.logsigmoid(z) - eps * F.logsigmoid(-z), *_ref_rewards(lp, p.beta))


def ipo(lp: PairLogps, p: PrefParams) -> LossOut:
    """IPO (Azar et al. 2023, eq. 17): (h_w - h_l - 1/(2 tau))^2 with tau = beta.

    As in TRL (confirmed there with the IPO authors), the log-ratios are per-token averages, so
    the target margin 1/(2 tau) does not depend on the completion lengths.
    """
    c, r = _logratios(lp)
    h = c / lp.chosen_tokens.clamp(min=1) - r / lp.rejected_tokens.clamp(min=1)
    return LossOut((h - 1 / (2 * p.beta)) ** 2, *_ref_rewards(lp, p.beta))


def simpo(lp: PairLogps, p: PrefParams) -> LossOut:
    """SimPO (Meng et al. 2024, eq. 6), reference-free: the implied reward is the length-averaged
    log-prob times beta, and pairs must win by gamma: -log sigmoid(beta (a_w - a_l) - gamma)."""
    a_w, a_l = _averages(lp)
    losses = -F.logsigmoid(p.beta * (a_w - a_l) - p.simpo_gamma)
    return LossOut(losses, p.beta * a_w.detach(), p.beta * a_l.detach())


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, stable at both ends (Maechler 2012: switch at -log 2)."""
    return torch.where(x < -0.6931471805599453, torch.log1p(-torch.exp(x)),
                       torch.log(-torch.expm1(x)))


def orpo(lp: PairLogps, p: PrefParams) -> LossOut:
    """ORPO (Hong et al. 2024, eq. 6-7), reference-free: NLL of the chosen reply plus
    beta * -log sigmoid(log odds(y_w) - log odds(y_l)), odds(y) = P(y) / (1 - P(y)) with
    P(y) = exp(mean token log-prob).

    The NLL here is the chosen completion's mean token NLL (the paper's L_SFT); TRL's ORPOTrainer
    averages it over prompt and completion tokens of the whole batch instead.
    """
    a_w, a_l = _averages(lp)
    # exp(a) == 1 only for a degenerate model; keep log(1 - P) finite there
    a_w_, a_l_ = a_w.clamp(max=-1e-6), a_l.clamp(max=-1e-6)
    log_odds = (a_w_ - a_l_) - (log1mexp(a_w_) - log1mexp(a_l_))
    losses = -a_w - p.beta * F.logsigmoid(log_odds)
    return LossOut(losses, p.beta * a_w.detach(), p.beta * a_l.detach())


class PairLoss(NamedTuple):
    fn: Callable[[PairLogps, PrefParams], LossOut]
    needs_reference: bool
    default_beta: float  # the value the paper / TRL recommends


PAIR_LOSSES: dict[str, PairLoss] = {
    "dpo": PairLoss(dpo, True, 0.1),
    "cdpo": PairLoss(cdpo, True, 0.1),
    "ipo": PairLoss(ipo, True, 0.1),
    "simpo": PairLoss(simpo, False, 2.0),  # SimPO's paper uses beta 2.0-2.5
    "orpo": PairLoss(orpo, False, 0.1),
}


# --- KTO (unpaired) -------------------------------------------------------------------------------


class KTOOut(NamedTuple):
    losses: torch.Tensor  # (N,)
    rewards: torch.Tensor  # (N,) beta * log pi/pi_ref, detached


def kto_reference_point(kl_logps: torch.Tensor, ref_kl_logps: torch.Tensor,
                        mean: Callable[[torch.Tensor], torch.Tensor] = torch.mean
                        ) -> torch.Tensor:
    """KTO's reference point z0: a batch estimate of KL(pi || pi_ref) from mismatched
    (prompt, completion) pairs, clamped at 0 and detached (KTO paper sec. 4.1; as TRL).

    kl_logps, ref_kl_logps (N,) -> scalar. ``mean`` averages the (N,) log-ratios; under DDP it
    must average over every rank's rows (TRL gathers them), so that z0 does not depend on how
    the batch is split across processes.
    """
    return mean((kl_logps - ref_kl_logps).detach()).clamp(min=0)


def kto(logps: torch.Tensor, ref_logps: torch.Tensor, desirable: torch.Tensor, kl: torch.Tensor,
        p: PrefParams) -> KTOOut:
    """KTO (Ethayarajh et al. 2024, eq. 7) for N unpaired completions.

    desirable (N,) bool. Desirable: w_D (1 - sigmoid(beta (h - z0))); undesirable:
    w_U (1 - sigmoid(beta (z0 - h))), h = log pi/pi_ref, z0 = ``kl``.
    """
    h = logps - ref_logps
    good = p.desirable_weight * (1 - torch.sigmoid(p.beta * (h - kl)))
    bad = p.undesirable_weight * (1 - torch.sigmoid(p.beta * (kl - h)))
    return KTOOut(torch.where(desirable, good, bad), p.beta * h.detach())
