"""Distillation losses: hand-computed values, torch's kl_div, and TRL 1.16's GKD loss."""

import math
import os

import pytest
import torch
import torch.nn.functional as F

from lmlab.losses.distill import (forward_kl, generalized_jsd, hard_ce, mix_with_ce, reverse_kl,
                                  soft_loss, topk_forward_kl)

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

# One position, V = 2: teacher uniform, student (1/4, 3/4).
T0 = torch.tensor([[0.0, 0.0]])
S0 = torch.tensor([[0.0, math.log(3)]])


def test_forward_and_reverse_kl_by_hand():
    fwd = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # = 0.5 ln(4/3)
    rev = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert forward_kl(S0, T0).item() == pytest.approx(fwd)
    assert reverse_kl(S0, T0).item() == pytest.approx(rev)
    assert fwd != pytest.approx(rev)  # the direction matters


def test_temperature_softens_and_scales_by_tau_squared():
    # logits x2 at tau = 2 give back the same probabilities; the loss is then x tau^2 = 4
    assert forward_kl(2 * S0, 2 * T0, temperature=2.0).item() == pytest.approx(
        4 * 0.5 * math.log(4 / 3))
    assert reverse_kl(2 * S0, 2 * T0, temperature=2.0).item() == pytest.approx(
        4 * reverse_kl(S0, T0).item())


def test_jsd_by_hand_and_its_limits():
    m = [0.5 * 0.5 + 0.5 * 0.25, 0.5 * 0.5 + 0.5 * 0.75]
    kl_t = 0.5 * math.log(0.5 / m[0]) + 0.5 * math.log(0.5 / m[1])
    kl_s = 0.25 * math.log(0.25 / m[0]) + 0.75 * math.log(0.75 / m[1])
    assert generalized_jsd(S0, T0, beta=0.5).item() == pytest.approx(0.5 * kl_t + 0.5 * kl_s)
    assert generalized_jsd(S0, T0, beta=0.0).item() == pytest.approx(forward_kl(S0, T0).item())
    assert generalized_jsd(S0, T0, beta=1.0).item() == pytest.approx(reverse_kl(S0, T0).item())
    # beta -> 0: beta x forward KL to first order
    small = generalized_jsd(S0, T0, beta=1e-4).item()
    assert small / 1e-4 == pytest.approx(forward_kl(S0, T0).item(), rel=1e-2)  # fp32
    with pytest.raises(ValueError):
        generalized_jsd(S0, T0, beta=1.5)


def test_mask_sums_only_trained_positions_and_matches_kl_div():
    torch.manual_seed(0)
    s, t = torch.randn(2, 3, 7), torch.randn(2, 3, 7)
    mask = torch.tensor([[1, 0, 1], [0, 0, 1]], dtype=torch.bool)
    ref = F.kl_div(F.log_softmax(s[mask], -1), F.log_softmax(t[mask], -1), log_target=True,
                   reduction="sum")
    assert forward_kl(s, t, mask=mask).item() == pytest.approx(ref.item(), rel=1e-6)
    ref_rev = F.kl_div(F.log_softmax(t[mask], -1), F.log_softmax(s[mask], -1), log_target=True,
                       reduction="sum")
    assert reverse_kl(s, t, mask=mask).item() == pytest.approx(ref_rev.item(), rel=1e-6)
    assert forward_kl(t, t).item() == pytest.approx(0.0, abs=1e-6)


def test_topk_by_hand_and_equal_to_full_when_k_is_vocab():
    # teacher keeps ids 0, 1 with logits ln 2, 0 -> (2/3, 1/3); student uniform over V = 3
    ids = torch.tensor([[0, 1]])
    got = topk_forward_kl(torch.zeros(1, 3), ids, torch.tensor([[math.log(2), 0.0]]))
    want = 2 / 3 * math.log((2 / 3) / (1 / 3)) + 1 / 3 * math.log((1 / 3) / (1 / 3))
    assert got.item() == pytest.approx(want)
    torch.manual_seed(1)
    s, t = torch.randn(5, 11), torch.randn(5, 11)
    vals, idx = t.topk(11, dim=-1)
    assert topk_forward_kl(s, idx, vals, temperature=2.0).item() == pytest.approx(
        forward_kl(s, t, temperature=2.0).item(), rel=1e-6)
    vals, idx = t.topk(3, dim=-1)  # fewer entries: a different, still finite loss
    assert math.isfinite(topk_forward_kl(s, idx, vals).item())


def test_ce_mix():
    targets = torch.tensor([1])
    ce = -math.log(0.75)
    assert hard_ce(S0, targets).item() == pytest.approx(ce)
    soft = forward_kl(S0, T0)
    loss, got_ce = mix_with_ce(soft, S0, targets, alpha=0.25)
    assert got_ce.item() == pytest.approx(ce)
    assert loss.item() == pytest.approx(0.75 * 0.5 * math.log(4 / 3) + 0.25 * ce)
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
    # TRL does not rescale by tau^2 (Hinton's correction); ours does
    assert ours.item() == pytest.approx(tau ** 2 * theirs.item(), rel=1e-5)
