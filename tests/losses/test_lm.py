import math

import pytest
import torch

from lmlab.losses.lm import token_cross_entropy, token_cross_entropy_at
from lmlab.losses.objectives import LMObjective, trained_positions
from tests.tolerance import approx_fp32, fp32_tol, sum_terms


def test_cross_entropy_by_hand():
    # vocab 2, uniform logits -> every trained token costs ln 2
    logits = torch.zeros(1, 3, 2)
    labels = torch.tensor([[-100, 1, 0]])
    loss, n = token_cross_entropy(logits, labels)
    # 2 positions x a log-softmax over 2 (max, sub, exp, sum, log: ~6 roundings) summed
    assert n == 2 and loss.item() == approx_fp32(2 * math.log(2), 14)
    # a confident right prediction at t=0 for label 1: -log softmax([0, 5])[1]
    logits[0, 0] = torch.tensor([0.0, 5.0])
    loss, _ = token_cross_entropy(logits, labels)
    assert loss.item() == approx_fp32(math.log(1 + math.exp(-5)) + math.log(2), 14, 5.0)


def test_trained_positions_and_sliced_loss_match_full():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    labels = torch.tensor([[-100, -100, -100, 4, 5, -100], [-100, -100, 7, 8, -100, -100]])
    idx = trained_positions(labels)
    assert idx.tolist() == [1, 2, 3]  # predict labels at 2, 3, 4
    full, n_full = token_cross_entropy(logits, labels)
    part, n_part = token_cross_entropy_at(logits[:, idx], labels, idx)
    assert n_full == n_part == 4
    # 4 positions x a log-softmax over 11 (11 + ~6 roundings), values within the sum (~10)
    assert part.item() == approx_fp32(full.item(), 4 * 17)


def test_objective_equals_full_logits_loss(tiny_model):
    torch.manual_seed(0)
    ids = torch.randint(3, 500, (2, 9))
    labels = ids.clone()
    labels[:, :5] = -100
    labels[1, 8] = -100
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    loss, _ = LMObjective()(tiny_model, batch)
    with torch.no_grad():
        ref, n = token_cross_entropy(tiny_model(input_ids=ids).logits, labels)
    assert LMObjective().count(batch) == n == 7  # row 0: positions 5-8, row 1: 5-7
    # 7 positions, each a log-softmax over 49152 logits (inner products over the width 64,
    # computed for the kept positions only on one side): logits of size ~1 and a long sum of
    # probabilities, whose relative error lands on the log as an absolute one; then 7 of ~11
    tol = fp32_tol(7 * (64 + sum_terms(49152))) + fp32_tol(7, ref.item())
    assert loss.item() == pytest.approx(ref.item(), rel=0, abs=tol)
