"""Advantages by hand: GAE, whitening, GRPO group normalisation, RLOO."""

import pytest
import torch

from lmlab.rl.advantages import (
    gae,
    group_advantages,
    masked_mean,
    rloo_advantages,
    whiten,
)
from tests.tolerance import approx_fp32


def t(*rows):
    """GAE and whitening run in float64 here (eps 2.2e-16): pytest.approx's rel 1e-6 is ample.
    The group and RLOO cases take fp32 rewards, as the stages do: their tolerances are fp32's."""
    return torch.tensor(rows, dtype=torch.float64)


def flat(x):
    return x.reshape(-1).tolist()


def test_gae_by_hand():
    rewards = t([0.0, 0.0, 1.0], [0.0, 2.0, 9.0])
    values = t([0.5, 0.4, 0.3], [1.0, 1.0, 5.0])
    mask = t([1, 1, 1], [1, 1, 0])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # row 0: d2 = 1 - .3 = .7; d1 = .9*.3 - .4 = -.13 -> A1 = -.13 + .72*.7 = .374;
    #        d0 = .9*.4 - .5 = -.14 -> A0 = -.14 + .72*.374 = .12928
    # row 1: position 2 is padding (its reward 9 and value 5 must not leak in);
    #        A1 = 2 - 1 = 1; A0 = .9*1 - 1 + .72*1 = .62
    assert flat(adv) == pytest.approx([0.12928, 0.374, 0.7, 0.62, 1.0, 0.0])
    assert flat(ret) == pytest.approx([0.62928, 0.774, 1.0, 1.62, 2.0, 0.0])


def test_gae_lambda_one_gamma_one_is_return_minus_value():
    rewards, values = t([1.0, 2.0, 3.0]), t([0.5, 0.5, 0.5])
    adv, ret = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    assert flat(ret) == pytest.approx([6.0, 5.0, 3.0])  # reward-to-go
    assert flat(adv) == pytest.approx([5.5, 4.5, 2.5])


def test_whiten_by_hand():
    x, mask = t([1.0, 2.0, 3.0, 99.0]), t([1, 1, 1, 0])
    # mean 2, Bessel-corrected var (1 + 0 + 1) / 2 = 1; the padded 99 is ignored and zeroed
    assert flat(whiten(x, mask)) == pytest.approx([-1.0, 0.0, 1.0, 0.0], abs=1e-6)
    assert flat(whiten(x, mask, shift_mean=False)) == pytest.approx([1.0, 2.0, 3.0, 0.0],
                                                                     abs=1e-6)
    assert masked_mean(x, mask).item() == pytest.approx(2.0)


def test_group_advantages_by_hand():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    # group 1: mean .25, unbiased std sqrt(.75 / 3) = .5; group 2: all equal -> 0
    a = group_advantages(r, 4)
    # fp32: a mean of 4, the centring, a std (4 squares summed, a sqrt), + eps, a division:
    # about 12 roundings of values within 1.5
    assert a.tolist() == approx_fp32([0.75 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001,
                                      -0.25 / 0.5001, 0, 0, 0, 0], 12)
    # quarters are exact in fp32
    assert group_advantages(r, 4, scale="none").tolist() == [0.75, -0.25, -0.25, -0.25, 0, 0,
                                                             0, 0]
    std = r.std().item()  # batch scale: one std over all 8
    assert group_advantages(r, 4, scale="batch")[0].item() == approx_fp32(0.75 / (std + 1e-4),
                                                                          16)
    with pytest.raises(ValueError):
        group_advantages(torch.ones(6), 4)


def test_rloo_by_hand():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0, 4.0])
    a = rloo_advantages(r[:4], 4)  # baselines 0, 1/3, 1/3, 1/3
    # fp32: a sum of 4, a difference, a division by 3 and one more difference
    assert a.tolist() == approx_fp32([1.0, -1 / 3, -1 / 3, -1 / 3], 8)
    assert rloo_advantages(r[4:], 2).tolist() == [-2.0, 2.0]  # small integers: exact
    # RLOO = k/(k-1) times the group-centred reward
    assert (a * 3 / 4).tolist() == approx_fp32(
        group_advantages(r[:4], 4, scale="none").tolist(), 10)
    with pytest.raises(ValueError):
        rloo_advantages(r, 1)
