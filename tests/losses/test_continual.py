"""EWC and L2 penalties, the diagonal Fisher and the penalized objective, by hand."""

import math

import pytest
import torch

from lmlab.losses.continual import (
    PenalizedObjective,
    ewc_penalty,
    fisher_diagonal,
    l2_penalty,
)
from tests.tolerance import approx_fp32


def test_ewc_penalty_by_hand():
    f64 = torch.float64
    p = {"w": torch.tensor([1.0, 2.0], dtype=f64), "b": torch.tensor([3.0], dtype=f64)}
    anchor = {"w": torch.zeros(2, dtype=f64), "b": torch.tensor([1.0], dtype=f64)}
    fisher = {"w": torch.tensor([0.5, 2.0], dtype=f64), "b": torch.tensor([0.25], dtype=f64)}
    # lam/2 * (0.5*1 + 2*4 + 0.25*(3-1)^2) = 1 * (0.5 + 8 + 1) with lam = 2
    assert float(ewc_penalty(p, anchor, fisher, 2.0)) == pytest.approx(9.5, abs=1e-12)
    # gradient: lam * F * (p - anchor)
    w = p["w"].clone().requires_grad_(True)
    ewc_penalty({"w": w}, anchor, {"w": fisher["w"]}, 2.0).backward()
    assert w.grad.tolist() == pytest.approx([1.0, 8.0], abs=1e-12)
    assert float(ewc_penalty(anchor, anchor, fisher, 5.0)) == 0.0


def test_l2_pull_by_hand():
    p = {"w": torch.tensor([1.0, -2.0], dtype=torch.float64)}
    anchor = {"w": torch.tensor([0.0, 1.0], dtype=torch.float64)}
    # lam/2 * (1 + 9) with lam = 0.5
    assert float(l2_penalty(p, anchor, 0.5)) == pytest.approx(2.5, abs=1e-12)


class Bigram(torch.nn.Module):
    """logits at position t = W[x_t]: a model whose gradients are written by hand."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]]))

    def forward(self, input_ids, use_cache=False, **_):
        return type("Out", (), {"logits": self.w[input_ids]})()


def _collate(xs):
    return {"input_ids": torch.tensor([x[0] for x in xs]),
            "labels": torch.tensor([x[1] for x in xs])}


def test_fisher_diagonal_on_a_tiny_model_by_hand():
    rows = [([0, 1], [-100, 1]), ([1, 0], [-100, 0])]
    f = fisher_diagonal(Bigram(), rows, _collate)["w"]
    # row 1: softmax(W[0]) = (1/2, 1/2), target 1 -> grad W[0] = (1/2, -1/2), squared 1/4 each
    # row 2: softmax(W[1]) = (3/4, 1/4), target 0 -> grad W[1] = (-1/4, 1/4), squared 1/16
    # mean over the 2 rows
    want = [[0.125, 0.125], [1 / 32, 1 / 32]]
    assert f.tolist() == [approx_fp32(r, terms=8) for r in want]


def test_penalized_objective_adds_the_penalty_per_counted_token():
    class Base:
        def count(self, batch):
            return 4

        def __call__(self, model, batch):
            return torch.tensor(10.0), {}

    obj = PenalizedObjective(Base(), lambda: torch.tensor(0.5))
    loss, metrics = obj(None, {})
    # the loop divides by the step's count (4): 10/4 + 0.5
    assert float(loss) == 12.0 and metrics == {"penalty": 2.0} and obj.count({}) == 4
