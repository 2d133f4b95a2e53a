"""Bradley-Terry reward loss and reward measures: by hand, and parity with TRL's RewardTrainer."""

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from lmlab.losses.reward import bradley_terry, calibration_error, pair_accuracy
from tests.tolerance import approx_fp32


def t(*xs):
    """The hand-computed cases run in float64 (eps 2.2e-16): pytest.approx's rel 1e-6 is ample."""
    return torch.tensor(xs, dtype=torch.float64)


def test_bradley_terry_by_hand():
    assert bradley_terry(t(1.0), t(-1.0)).item() == pytest.approx(math.log(1 + math.exp(-2)))
    # margin: chosen must win by 0.5 -> -log s(2 - 0.5)
    assert bradley_terry(t(1.0), t(-1.0), margin=0.5).item() == pytest.approx(
        math.log(1 + math.exp(-1.5)))
    # centring: + coef (r_w + r_l)^2
    assert bradley_terry(t(1.0), t(0.0), center_coef=0.1).item() == pytest.approx(
        math.log(1 + math.exp(-1)) + 0.1)
    # per-pair margins
    got = bradley_terry(t(1.0, 1.0), t(0.0, 0.0), margin=t(0.0, 1.0))
    assert got.tolist() == pytest.approx([math.log(1 + math.exp(-1)), math.log(2)])


def test_accuracy_and_calibration_by_hand():
    assert pair_accuracy(t(1.0, 0.0, 2.0), t(0.0, 0.0, 3.0)).tolist() == [1.0, 0.0, 0.0]
    # diffs 2 and -1: confidences s(2) (right) and s(1) (wrong), in different bins
    ece = calibration_error(t(2.0, 0.0), t(0.0, 1.0))
    assert ece == pytest.approx(((1 - 1 / (1 + math.exp(-2))) + 1 / (1 + math.exp(-1))) / 2)
    # a confident, always-right model is nearly calibrated; a confident, always-wrong one is not
    assert calibration_error(t(*[20.0] * 8), t(*[0.0] * 8)) < 1e-6
    assert calibration_error(t(*[0.0] * 8), t(*[20.0] * 8)) > 0.99


@pytest.mark.parametrize("margin,center", [(None, None), (0.3, None), (None, 0.01), (0.3, 0.01)])
def test_matches_trl_reward_trainer(margin, center):
    from trl import RewardTrainer

    g = torch.Generator().manual_seed(0)
    b = 6
    scores = torch.randn(2 * b, 1, generator=g)  # (2B, 1): chosen rows then rejected rows
    stub = SimpleNamespace(model=SimpleNamespace(training=True),
                           args=SimpleNamespace(center_rewards_coefficient=center),
                           accelerator=SimpleNamespace(gather=lambda x: x,
                                                       gather_for_metrics=lambda x: x),
                           _metrics={"train": defaultdict(list)}, _total_train_tokens=0, _tp_size=1)
    inputs = {"input_ids": torch.zeros(2 * b, 3, dtype=torch.long),
              "attention_mask": torch.ones(2 * b, 3, dtype=torch.long)}
    margins = None
    if margin is not None:
        margins = torch.full((b,), margin) + torch.arange(b) * 0.1
        inputs["margin"] = margins
    loss = RewardTrainer.compute_loss(stub, lambda **kw: SimpleNamespace(logits=scores), inputs)
    chosen, rejected = scores[:b, 0], scores[b:, 0]
    ours = bradley_terry(chosen, rejected, margin=0.0 if margins is None else margins,
                         center_coef=center or 0.0)
    # fp32 on both sides: a softplus of a difference (+ margin, + centring square) of scores
    # within 3, then a mean of 6: about 12 roundings; the accuracy is a mean of 6 zeros and ones
    assert ours.mean().item() == approx_fp32(loss.item(), 12, 3.0)
    assert pair_accuracy(chosen, rejected).mean().item() == approx_fp32(
        stub._metrics["train"]["accuracy"][0], 6)
