"""The NumPy perceptron learns AND/OR, can't learn XOR, and converges on a separable set within
Novikoff's bound; the hand-written backprop of the XOR network equals torch autograd and finite
differences, and the network solves XOR."""

import numpy as np
import pytest
import torch

from lmlab.scratch.gradcheck import check_grads
from lmlab.scratch.numpy_nn import Perceptron, XorMLP
from lmlab.scratch.toydata import GATE_X, GATES, separable
from tests.scratch.float64 import assert_close64


@pytest.mark.parametrize("gate", ["and", "or"])
def test_perceptron_learns_and_and_or(gate):
    p = Perceptron(2)
    mistakes = p.fit(GATE_X, GATES[gate], epochs=50)
    assert mistakes[-1] == 0 and len(mistakes) < 50
    assert np.array_equal(p.predict(GATE_X), GATES[gate])


def test_perceptron_never_gets_xor_right():
    p = Perceptron(2)
    mistakes = p.fit(GATE_X, GATES["xor"], epochs=200)
    assert len(mistakes) == 200 and min(mistakes) >= 1  # every epoch, at least one mistake
    assert (p.predict(GATE_X) == GATES["xor"]).sum() <= 3  # a line gets at most 3 of the 4


@pytest.mark.parametrize("seed", range(3))
def test_perceptron_converges_within_the_novikoff_bound(seed):
    X, y, (w, b) = separable(200, margin=0.1, seed=seed)
    p = Perceptron(2)
    mistakes = p.fit(X, y, epochs=1000, seed=seed)
    assert mistakes[-1] == 0
    assert np.array_equal(p.predict(X), y)
    # augmented points (x, 1) and the unit separator u = (w, b) / |(w, b)|: every point is at
    # least gamma from it; the updates (mistakes) are at most (R / gamma)^2
    Xa, u = np.hstack([X, np.ones((len(X), 1))]), np.append(w, b) / np.linalg.norm(np.append(w, b))
    gamma = np.min(np.abs(Xa @ u))
    radius = np.linalg.norm(Xa, axis=1).max()
    assert sum(mistakes) <= (radius / gamma) ** 2


def test_xor_backprop_equals_torch_autograd():
    rng = np.random.default_rng(0)
    net = XorMLP(hidden=5, seed=1)
    X, y = rng.normal(size=(9, 2)), rng.integers(0, 2, size=9).astype(float)
    loss, grads = net.loss_and_grads(X, y)
    P = {k: torch.tensor(v, requires_grad=True) for k, v in net.params.items()}
    h = torch.tanh(torch.tensor(X) @ P["W1"].T + P["b1"])
    z = h @ P["w2"] + P["b2"]
    ref = torch.nn.functional.binary_cross_entropy_with_logits(z, torch.tensor(y))
    ref.backward()
    assert_close64(loss, ref.item(), 20, 10.0, "loss")
    for k, g in grads.items():
        assert_close64(g, P[k].grad, 20, 10.0, f"d{k}")


def test_xor_backprop_equals_finite_differences():
    net = XorMLP(hidden=3, seed=2)
    _, grads = net.loss_and_grads(GATE_X, GATES["xor"])
    errors = check_grads(lambda: net.loss_and_grads(GATE_X, GATES["xor"])[0], net.params, grads)
    assert max(errors.values()) < 1e-8, errors


@pytest.mark.parametrize("seed", range(5))
def test_xor_mlp_solves_xor(seed):
    net = XorMLP(hidden=8, seed=seed)
    history = net.train(GATE_X, GATES["xor"], steps=1000, lr=1.0)
    p, _ = net.forward(GATE_X)
    assert np.array_equal(p > 0.5, GATES["xor"] > 0.5)
    assert history[-1]["loss"] < 0.05 < history[0]["loss"]
