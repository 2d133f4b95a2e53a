"""The NumPy layers equal torch.nn.functional in float64, forward and backward, on random
shapes with odd sizes, padding and stride; the backward also equals finite differences."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lmlab.scratch import numpy_layers as L
from lmlab.scratch.gradcheck import check_grads
from tests.scratch.float64 import assert_close64


def t(a, grad=True):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def magnitudes(fn, args, dout):
    """For a bilinear op: the sums of |terms| behind each output (fn on |args|) and behind each
    gradient entry (the backward of sum(|dout| * fn(|args|))): the S of the bound per entry."""
    absargs = [t(np.abs(a)) for a in args]
    out = fn(*absargs)
    (out * torch.tensor(np.abs(dout))).sum().backward()
    return out.detach().numpy(), [a.grad.numpy() for a in absargs]


# --- linear, relu ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_linear_equals_torch(seed):
    rng = np.random.default_rng(seed)
    n, d_in, d_out = rng.integers(1, 9, size=3)
    x, w, b = rng.normal(size=(n, d_in)), rng.normal(size=(d_out, d_in)), rng.normal(size=d_out)
    dout = rng.normal(size=(n, d_out))
    out, cache = L.linear_forward(x, w, b)
    grads = L.linear_backward(dout, cache)
    tx, tw, tb = t(x), t(w), t(b)
    ref = F.linear(tx, tw, tb)
    ref.backward(torch.tensor(dout))
    mag_out, mags = magnitudes(F.linear, [x, w, b], dout)
    assert_close64(out, ref.detach(), d_in + 1, mag_out, "out")
    for name, g, tg, m, n_terms in zip("xwb", grads, (tx, tw, tb), mags, (d_out, n, n)):
        assert_close64(g, tg.grad, n_terms, m, f"d{name}")


def test_relu_equals_torch_and_passes_no_gradient_below_zero():
    x = np.array([[-2.0, -0.5, 0.5, 3.0]])
    out, cache = L.relu_forward(x)
    assert out.tolist() == [[0.0, 0.0, 0.5, 3.0]]
    assert L.relu_backward(np.full_like(x, 7.0), cache).tolist() == [[0.0, 0.0, 7.0, 7.0]]
    tx = t(x)
    F.relu(tx).backward(torch.full_like(tx, 7.0))
    assert np.array_equal(L.relu_backward(np.full_like(x, 7.0), cache), tx.grad.numpy())


# --- conv2d ------------------------------------------------------------------------------------

# (N, C, H, W, F, KH, KW, stride, padding): odd and non-square sizes, 1x1 kernels, a kernel as
# large as the padded input, stride larger than the kernel (pixels skipped), padding 0..2
CONV_CASES = [(2, 3, 7, 5, 4, 3, 3, 1, 1), (1, 1, 9, 9, 2, 3, 3, 2, 0), (3, 2, 6, 7, 3, 2, 3, 2, 1),
              (2, 4, 5, 5, 5, 1, 1, 1, 0), (1, 2, 8, 6, 3, 5, 3, 3, 2), (2, 3, 4, 4, 2, 6, 6, 1, 1),
              (1, 3, 10, 7, 2, 2, 2, 3, 0)]


def random_conv_case(seed):
    rng = np.random.default_rng(100 + seed)
    kh, kw = rng.integers(1, 5, size=2)
    pad, stride = int(rng.integers(0, 3)), int(rng.integers(1, 4))
    h, w = int(rng.integers(max(kh - 2 * pad, 1), 12)), int(rng.integers(max(kw - 2 * pad, 1), 12))
    return (int(rng.integers(1, 4)), int(rng.integers(1, 5)), h, w, int(rng.integers(1, 5)),
            int(kh), int(kw), stride, pad)


@pytest.mark.parametrize("case", CONV_CASES + [random_conv_case(s) for s in range(6)])
def test_conv2d_equals_torch(case):
    n, c, h, w, f, kh, kw, stride, pad = case
    rng = np.random.default_rng(sum(case))
    x, wt, b = rng.normal(size=(n, c, h, w)), rng.normal(size=(f, c, kh, kw)), rng.normal(size=f)
    out, cache = L.conv2d_forward(x, wt, b, stride, pad)
    tx, tw, tb = t(x), t(wt), t(b)
    ref = F.conv2d(tx, tw, tb, stride=stride, padding=pad)
    assert out.shape == tuple(ref.shape)
    dout = rng.normal(size=out.shape)
    ref.backward(torch.tensor(dout))
    dx, dw, db = L.conv2d_backward(dout, cache)

    def conv(a, k, bias):
        return F.conv2d(a, k, bias, stride=stride, padding=pad)

    mag_out, (mx, mw, mb) = magnitudes(conv, [x, wt, b], dout)
    ho, wo = out.shape[2:]
    assert_close64(out, ref.detach(), c * kh * kw + 1, mag_out, "out")
    assert_close64(dx, tx.grad, f * kh * kw, mx, "dx")
    assert_close64(dw, tw.grad, n * ho * wo, mw, "dw")
    assert_close64(db, tb.grad, n * ho * wo, mb, "db")


def test_conv2d_backward_equals_finite_differences():
    rng = np.random.default_rng(7)
    x, w, b = rng.normal(size=(2, 2, 5, 4)), rng.normal(size=(3, 2, 3, 2)), rng.normal(size=3)
    dout = rng.normal(size=L.conv2d_forward(x, w, b, 2, 1)[0].shape)

    def loss():
        return float((L.conv2d_forward(x, w, b, 2, 1)[0] * dout).sum())

    dx, dw, db = L.conv2d_backward(dout, L.conv2d_forward(x, w, b, 2, 1)[1])
    errors = check_grads(loss, {"x": x, "w": w, "b": b}, {"x": dx, "w": dw, "b": db})
    assert max(errors.values()) < 1e-8, errors


def test_conv2d_refuses_a_kernel_larger_than_the_padded_input():
    with pytest.raises(ValueError, match="does not fit"):
        L.conv2d_forward(np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 4, 4)), np.zeros(1))


# --- max-pool ----------------------------------------------------------------------------------

# (N, C, H, W, kernel, stride, padding): overlapping windows (stride < kernel) add gradients,
# odd sizes leave a remainder that no window covers
POOL_CASES = [(2, 3, 8, 8, 2, 2, 0), (1, 2, 7, 5, 3, 2, 1), (2, 1, 9, 6, 3, 1, 0),
              (1, 3, 5, 5, 2, 3, 1), (3, 2, 6, 7, 4, 2, 2), (1, 1, 1, 1, 1, 1, 0)]


@pytest.mark.parametrize("case", POOL_CASES)
def test_maxpool2d_equals_torch(case):
    n, c, h, w, k, s, p = case
    rng = np.random.default_rng(sum(case))
    x = rng.normal(size=(n, c, h, w))  # continuous values: no ties inside a window
    out, cache = L.maxpool2d_forward(x, k, s, p)
    tx = t(x)
    ref = F.max_pool2d(tx, k, s, p)
    dout = rng.normal(size=out.shape)
    ref.backward(torch.tensor(dout))
    assert np.array_equal(out, ref.detach().numpy())  # a selection: exact
    assert_close64(L.maxpool2d_backward(dout, cache), tx.grad, k * k, np.abs(dout).max(), "dx")


def test_maxpool2d_refuses_padding_over_half_the_kernel():
    with pytest.raises(ValueError, match="at most half"):
        L.maxpool2d_forward(np.zeros((1, 1, 4, 4)), kernel=2, padding=2)


# --- batch-norm --------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(8, 3), (5, 4, 3, 7), (2, 2, 5, 5), (3, 1, 1, 1)])
def test_batchnorm_equals_torch_in_train_and_eval(shape):
    rng = np.random.default_rng(len(shape) * 10 + shape[0])
    c, n = shape[1], int(np.prod(shape)) // shape[1]
    bn = L.BatchNorm(c, eps=1e-5, momentum=0.1)
    bn.gamma, bn.beta = rng.normal(size=c), rng.normal(size=c)
    tg, tb = t(bn.gamma), t(bn.beta)
    rm, rv = torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64)
    for step in range(3):  # train steps move the running stats; then one eval step
        train = step < 2
        x = rng.normal(2.0, 3.0, size=shape)
        dout = rng.normal(size=shape)
        out, cache = bn.forward(x, train=train)
        dx, dg, db = bn.backward(dout, cache)
        tx = t(x)
        tg.grad = tb.grad = None
        ref = F.batch_norm(tx, rm, rv, tg, tb, training=train, momentum=0.1, eps=1e-5)
        ref.backward(torch.tensor(dout))
        scale = 16 * (np.abs(x).max() + 1) * (np.abs(bn.gamma).max() + 1)  # |x|, |xhat| <= sqrt(n)
        assert_close64(out, ref.detach(), n, scale, f"out step {step}")
        assert_close64(dx, tx.grad, n, scale * np.abs(dout).max(), f"dx step {step}")
        assert_close64(dg, tg.grad, n, scale * np.abs(dout).max(), f"dgamma step {step}")
        assert_close64(db, tb.grad, n, np.abs(dout).max(), f"dbeta step {step}")
        assert_close64(bn.running_mean, rm, n, 16 * np.abs(x).max(), "running_mean")
        assert_close64(bn.running_var, rv, n, 16 * (np.abs(x).max() + 1) ** 2, "running_var")
    assert not np.allclose(bn.running_var, 1.0)  # the stats did move


def test_batchnorm_backward_in_training_equals_finite_differences():
    rng = np.random.default_rng(3)
    x, dout = rng.normal(size=(4, 3, 2, 3)), rng.normal(size=(4, 3, 2, 3))
    bn = L.BatchNorm(3)
    bn.gamma, bn.beta = rng.normal(size=3), rng.normal(size=3)

    def loss():
        fresh = L.BatchNorm(3)  # running stats don't matter here; forward without side effects
        fresh.gamma, fresh.beta = bn.gamma, bn.beta
        return float((fresh.forward(x, train=True)[0] * dout).sum())

    dx, dg, db = bn.backward(dout, bn.forward(x, train=True)[1])
    errors = check_grads(loss, {"x": x, "gamma": bn.gamma, "beta": bn.beta},
                         {"x": dx, "gamma": dg, "beta": db})
    assert max(errors.values()) < 1e-7, errors


# --- softmax cross-entropy ---------------------------------------------------------------------


@pytest.mark.parametrize("n,k,scale", [(1, 2, 1.0), (7, 5, 3.0), (16, 10, 30.0), (3, 1, 1.0)])
def test_softmax_cross_entropy_equals_torch(n, k, scale):
    rng = np.random.default_rng(n * k)
    logits, labels = scale * rng.normal(size=(n, k)), rng.integers(0, k, size=n)
    loss, dlogits = L.softmax_cross_entropy(logits, labels)
    tl = t(logits)
    ref = F.cross_entropy(tl, torch.tensor(labels))
    ref.backward()
    assert_close64(loss, ref.item(), k + n, 4 * scale * 4 + 4, "loss")
    assert_close64(dlogits, tl.grad, k, 1.0 / n, "dlogits")


def test_softmax_cross_entropy_by_hand_and_with_huge_logits():
    # two classes, logits (0, ln 3): p = (1/4, 3/4); label 1 -> loss ln(4/3), grad (1/4, -1/4)
    loss, d = L.softmax_cross_entropy(np.array([[0.0, np.log(3.0)]]), np.array([1]))
    assert loss == pytest.approx(np.log(4 / 3), abs=1e-15)
    assert np.allclose(d, [[0.25, -0.25]], atol=1e-15, rtol=0)
    loss, d = L.softmax_cross_entropy(np.array([[1000.0, 0.0]]), np.array([1]))
    assert loss == pytest.approx(1000.0) and np.isfinite(d).all()
