"""The scalar Value engine equals torch autograd in float64: values and gradients of random
expressions over every operation, and of a small MLP's loss; gradients accumulate."""

import math
import random

import numpy as np
import pytest
import torch

from lmlab.scratch.autograd import MLP, Value, accuracy, hinge_loss, train_mlp
from lmlab.scratch.toydata import moons

# float64 roundoff over <= ~150 operations on values of size <= ~50 stays under
# 4 * 150 * 2.2e-16 * 50 ~ 7e-12 (tests/scratch/float64.py); 1e-10 leaves room and still catches
# a wrong derivative, which is off by 1e-3 or more
TOL = 1e-10


def op_step(rng: random.Random, pool: list):
    """One random operation on members of ``pool`` (Values or torch scalars: the same code
    drives both), kept inside each function's domain: log and fractional powers take a
    positive argument, divisions a denominator >= 1, exp an argument in [-1, 1]."""
    a, b = rng.choice(pool), rng.choice(pool)
    k = rng.randrange(13)
    if k == 0:
        return a + b
    if k == 1:
        return a - b
    if k == 2:
        return a * b
    if k == 3:
        return a / (b * b + 1.0)
    if k == 4:
        return a ** rng.choice([2, 3])
    if k == 5:
        return (a * a + 0.5) ** rng.choice([0.5, -1.5, 2.5])
    if k == 6:
        return a.relu()
    if k == 7:
        return a.tanh()
    if k == 8:
        return a.tanh().exp()
    if k == 9:
        return (a * a + 0.1).log()
    if k == 10:
        return 2.0 - a * 0.5  # rsub, and constants on the right
    if k == 11:
        return 1.5 / (a * a + 1.0) + 3.0 * b  # rtruediv, rmul, radd
    return -a


def build(leaves: list, seed: int, n_ops: int):
    rng = random.Random(seed)
    pool = list(leaves)
    for _ in range(n_ops):
        pool.append(op_step(rng, pool))
    return sum(pool[-4:], pool[0] * 0.0)  # several heads reuse shared nodes


@pytest.mark.parametrize("seed", range(12))
def test_random_expressions_equal_torch(seed):
    rng = np.random.default_rng(seed)
    xs = rng.uniform(-2, 2, size=4)
    vals = [Value(x) for x in xs]
    tens = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    out, ref = build(vals, seed, 30), build(tens, seed, 30)
    out.backward()
    ref.backward()
    assert math.isfinite(out.data)
    assert out.data == pytest.approx(ref.item(), rel=TOL, abs=TOL)
    for v, tt in zip(vals, tens):
        g = 0.0 if tt.grad is None else tt.grad.item()  # a leaf the expression didn't use
        assert v.grad == pytest.approx(g, rel=TOL, abs=TOL)


def test_each_operation_alone_by_hand():
    a, b = Value(3.0), Value(-2.0)
    cases = [(a + b, 1, 1), (a - b, 1, -1), (a * b, -2, 3), (a / b, -0.5, -0.75),
             (a ** 2, 6, 0), (b.relu(), 0, 0), (a.relu(), 1, 0),
             (a.exp(), math.exp(3), 0), (a.log(), 1 / 3, 0),
             (b.tanh(), 0, 1 - math.tanh(-2) ** 2)]
    for out, da, db in cases:
        a.grad = b.grad = 0.0
        out.backward()
        assert (a.grad, b.grad) == pytest.approx((da, db), abs=1e-15), out.op


def test_gradients_accumulate_over_reuse_and_over_calls():
    x = Value(3.0)
    y = x * x + x  # x used three times: dy/dx = 2x + 1 = 7
    y.backward()
    assert x.grad == 7.0
    z = x * 2.0
    z.backward()  # no zero_grad in between: adds 2, as torch does
    assert x.grad == 9.0


def test_backward_handles_deep_graphs():
    x = Value(0.5)
    y = x
    for _ in range(5000):  # deeper than Python's recursion limit
        y = y * 1.0 + 0.0
    y.backward()
    assert x.grad == 1.0


def torch_mlp_loss(model: MLP, X, y, alpha=1e-4):
    """The same MLP and hinge loss in torch, with the Value model's weights as leaves."""
    leaves = [torch.tensor(p.data, dtype=torch.float64, requires_grad=True)
              for p in model.parameters()]
    it = iter(leaves)
    layers = []
    for layer in model.layers:
        W = torch.stack([torch.stack([next(it) for _ in n.w] + [next(it)])
                         for n in layer.neurons])  # (out, in + 1): weights then bias
        layers.append((W, layer.neurons[0].act))
    h = torch.tensor(X, dtype=torch.float64)
    for W, act in layers:
        h = h @ W[:, :-1].T + W[:, -1]
        h = h if act == "linear" else getattr(torch, act)(h)
    margins = torch.relu(1.0 - torch.tensor(y, dtype=torch.float64) * h[:, 0])
    return margins.mean() + alpha * sum(p * p for p in leaves), leaves


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_mlp_loss_and_gradients_equal_torch(act):
    X, y = moons(12, noise=0.1, seed=1)
    model = MLP(2, [5, 4, 1], act=act, seed=3)
    loss, _ = hinge_loss(model, X, y)
    model.zero_grad()
    loss.backward()
    ref, leaves = torch_mlp_loss(model, X, y)
    ref.backward()
    assert loss.data == pytest.approx(ref.item(), rel=TOL, abs=TOL)
    ours = np.array([p.grad for p in model.parameters()])
    theirs = np.array([leaf.grad.item() for leaf in leaves])
    assert np.abs(ours).max() > 1e-3  # the loss did reach the weights
    assert np.allclose(ours, theirs, rtol=TOL, atol=TOL)


def test_training_separates_a_few_moons():
    X, y = moons(16, noise=0.05, seed=2)
    model = MLP(2, [6, 6, 1], seed=2)
    before = accuracy(model, X, y)
    history = train_mlp(model, X, y, steps=30, lr=1.0)
    assert history[-1]["loss"] < 0.1 * history[0]["loss"]
    assert accuracy(model, X, y) == 1.0 > before


@pytest.mark.slow
def test_training_separates_the_moons_and_generalises():
    X, y = moons(64, noise=0.1, seed=0)
    model = MLP(2, [8, 8, 1], seed=0)
    train_mlp(model, X, y, steps=80, lr=1.0)
    assert accuracy(model, X, y) >= 0.95
    assert accuracy(model, *moons(200, noise=0.1, seed=1)) >= 0.9  # fresh points


def test_mlp_refuses_an_unknown_activation():
    with pytest.raises(ValueError, match="relu or tanh"):
        MLP(2, [3, 1], act="gelu")
