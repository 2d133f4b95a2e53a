"""Distillation losses: hand-computed values, torch's kl_div, and TRL 1.16's GKD loss."""

import math
import os

import pytest
import torch
import torch.nn.functional as F

from lmlab.losses.distill import (
    forward_kl,
    generalized_jsd,
    hard_ce,
    mix_with_ce,
    reverse_kl,
    soft_loss,
    topk_forward_kl,
)
from tests.tolerance import approx_fp32

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

# One position, V = 2: teacher uniform, student (1/4, 3/4).
T0 = torch.tensor([[0.0, 0.0]])
S0 = torch.tensor([[0.0, math.log(3)]])
# fp32 roundings on the longest path of one of these losses at V = 2: two log-softmaxes (max, sub,
# exp, a sum of 2, log, sub: 6), the JSD mixture (exp, mul, add, log: 5), the KL (exp, sub, mul,
# a sum of 2: 4), the final weighting (2); values of size <= ln 4 (tests/tolerance.py)
TERMS = 16
LN4 = math.log(4)


def test_forward_and_reverse_kl_by_hand():
    fwd = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # = 0.5 ln(4/3)
    rev = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert forward_kl(S0, T0).item() == approx_fp32(fwd, TERMS, LN4)
    assert reverse_kl(S0, T0).item() == approx_fp32(rev, TERMS, LN4)
    assert fwd != approx_fp32(rev, TERMS, LN4)  # the direction matters


def test_temperature_softens_and_scales_by_tau_squared():
    # logits x2 at tau = 2 give back the same probabilities; the loss is then x tau^2 = 4
    # tau^2 = 4 scales the intermediates' error by 4 as well
    assert forward_kl(2 * S0, 2 * T0, temperature=2.0).item() == approx_fp32(
        4 * 0.5 * math.log(4 / 3), TERMS, 4 * LN4)
    assert reverse_kl(2 * S0, 2 * T0, temperature=2.0).item() == approx_fp32(
        4 * reverse_kl(S0, T0).item(), TERMS, 4 * LN4)


def _jsd_by_hand(beta):
    """beta KL(p_T || m) + (1 - beta) KL(p_S || m) for T0, S0, in float64."""
    p_t, p_s = (0.5, 0.5), (0.25, 0.75)
    m = [beta * t + (1 - beta) * s for t, s in zip(p_t, p_s)]
    kl_t = sum(t * math.log(t / x) for t, x in zip(p_t, m))
    kl_s = sum(s * math.log(s / x) for s, x in zip(p_s, m))
    return beta * kl_t + (1 - beta) * kl_s


def test_jsd_by_hand_and_its_limits():
    for beta in (0.5, 0.01):
        assert generalized_jsd(S0, T0, beta=beta).item() == approx_fp32(
            _jsd_by_hand(beta), TERMS, LN4)
    # the ends are the plain KLs, by the same computation
    assert generalized_jsd(S0, T0, beta=0.0).item() == forward_kl(S0, T0).item()
    assert generalized_jsd(S0, T0, beta=1.0).item() == reverse_kl(S0, T0).item()
    # beta -> 0: beta x forward KL to first order (the next term is 1.2e-4 relative here). The
    # result, 1.4e-5, is a difference of fp32 logs of size ~1.4, so a few eps of those (up to
    # ~3e-7) is up to 2% of it: 5% still tells the forward KL (0.144) from the reverse (0.131)
    small = generalized_jsd(S0, T0, beta=1e-4).item()
    assert small / 1e-4 == pytest.approx(0.5 * math.log(4 / 3), rel=0.05)
    with pytest.raises(ValueError):
        generalized_jsd(S0, T0, beta=1.5)


def test_mask_sums_only_trained_positions_and_matches_kl_div():
    torch.manual_seed(0)
    s, t = torch.randn(2, 3, 7), torch.randn(2, 3, 7)
    mask = torch.tensor([[1, 0, 1], [0, 0, 1]], dtype=torch.bool)
    ref = F.kl_div(F.log_softmax(s[mask], -1), F.log_softmax(t[mask], -1), log_target=True,
                   reduction="sum")
    # 3 kept rows of V = 7 summed (21 terms) after a log-softmax and the KL's elementwise steps
    # (~10); log-probabilities of randn logits are within ~6 in size
    terms, scale = 31, 6.0
    assert forward_kl(s, t, mask=mask).item() == approx_fp32(ref.item(), terms, scale)
    ref_rev = F.kl_div(F.log_softmax(t[mask], -1), F.log_softmax(s[mask], -1), log_target=True,
                       reduction="sum")
    assert reverse_kl(s, t, mask=mask).item() == approx_fp32(ref_rev.item(), terms, scale)
    assert forward_kl(t, t).item() == 0.0  # log p - log p is exactly 0 in every element


def test_topk_by_hand_and_equal_to_full_when_k_is_vocab():
    # teacher keeps ids 0, 1 with logits ln 2, 0 -> (2/3, 1/3); student uniform over V = 3
    ids = torch.tensor([[0, 1]])
    got = topk_forward_kl(torch.zeros(1, 3), ids, torch.tensor([[math.log(2), 0.0]]))
    want = 2 / 3 * math.log((2 / 3) / (1 / 3)) + 1 / 3 * math.log((1 / 3) / (1 / 3))
    assert got.item() == approx_fp32(want, TERMS, math.log(3))
    torch.manual_seed(1)
    s, t = torch.randn(5, 11), torch.randn(5, 11)
    vals, idx = t.topk(11, dim=-1)
    # 5 rows of V = 11 (55 terms) plus the elementwise steps (~10), x tau^2 = 4, logs within ~6
    assert topk_forward_kl(s, idx, vals, temperature=2.0).item() == approx_fp32(
        forward_kl(s, t, temperature=2.0).item(), 65, 4 * 6.0)
    vals, idx = t.topk(3, dim=-1)  # fewer entries: a different, still finite loss
    assert math.isfinite(topk_forward_kl(s, idx, vals).item())


def test_ce_mix():
    targets = torch.tensor([1])
    ce = -math.log(0.75)
    assert hard_ce(S0, targets).item() == approx_fp32(ce, TERMS, LN4)
    soft = forward_kl(S0, T0)
    loss, got_ce = mix_with_ce(soft, S0, targets, alpha=0.25)
    assert got_ce.item() == approx_fp32(ce, TERMS, LN4)
    assert loss.item() == approx_fp32(0.75 * 0.5 * math.log(4 / 3) + 0.25 * ce, TERMS, LN4)
    assert hard_ce(S0, torch.tensor([-100])).item() == 0.0
    with pytest.raises(ValueError):
        soft_loss("kl", S0, T0)


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_parity_with_trl_gkd(beta, tau):
    gkd = pytest.importorskip("trl.experimental.gkd.gkd_trainer")
    torch.manual_seed(2)
    s, t = torch.randn(2, 4, 13), torch.randn(2, 4, 13)
    labels = torch.tensor([[-100, 3, 4, 5], [-100, -100, 6, -100]])
    theirs = gkd.GKDTrainer.generalized_jsd_loss(s, t, labels=labels, beta=beta,
                                                 temperature=tau, reduction="sum")
    ours = generalized_jsd(s, t, beta=beta, temperature=tau, mask=labels != -100)
    # TRL does not rescale by tau^2 (Hinton's correction); ours does. 4 kept rows of V = 13
    # (52 terms) plus the mixture's and the KLs' elementwise steps (~20), logs within ~6
    assert ours.item() == approx_fp32(tau ** 2 * theirs.item(), 72, tau ** 2 * 6.0)
