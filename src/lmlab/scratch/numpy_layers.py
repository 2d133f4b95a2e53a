"""Layers by hand in NumPy, forward and backward (weeks 1-5: "convolution and pooling from
scratch"): linear, relu, conv2d, max-pool, batch-norm and softmax cross-entropy.

Each ``*_forward`` returns ``(out, cache)``; the matching ``*_backward(dout, cache)`` takes the
gradient of the loss with respect to ``out`` and returns the gradients with respect to the
inputs and parameters, in the order the forward took them. Shapes and conventions are
PyTorch's, so tests/scratch/ can check each one against ``torch.nn.functional`` in float64:
images are (N, C, H, W), a linear weight is (out, in), a conv weight (F, C, KH, KW).

Convolution and pooling loop over the KH x KW kernel offsets only (a few iterations) and let
NumPy do the rest: at offset (i, j) every output pixel sees the input pixel
(s*h + i, s*w + j) of the padded image, a strided slice.
"""

from __future__ import annotations

import numpy as np

# --- linear and relu ----------------------------------------------------------------------------


def linear_forward(x, w, b):
    """x (N, D_in), w (D_out, D_in), b (D_out,) -> x @ w.T + b (N, D_out)."""
    return x @ w.T + b, (x, w)


def linear_backward(dout, cache):
    x, w = cache
    return dout @ w, dout.T @ x, dout.sum(axis=0)  # dx, dw, db


def relu_forward(x):
    return np.maximum(x, 0.0), x


def relu_backward(dout, x):
    return dout * (x > 0)


# --- conv2d --------------------------------------------------------------------------------------


def _out_size(size: int, k: int, stride: int, pad: int) -> int:
    out = (size + 2 * pad - k) // stride + 1
    if out < 1:
        raise ValueError(f"kernel {k} does not fit an input of {size} with padding {pad}")
    return out


def _window(i: int, j: int, ho: int, wo: int, s: int):
    """The slice of a padded image that kernel offset (i, j) reads for all output pixels."""
    return (slice(None), slice(None), slice(i, i + s * (ho - 1) + 1, s),
            slice(j, j + s * (wo - 1) + 1, s))


def conv2d_forward(x, w, b, stride: int = 1, padding: int = 0):
    """x (N, C, H, W), w (F, C, KH, KW), b (F,) -> (N, F, Ho, Wo), zero padding on all sides
    (cross-correlation, like torch's conv2d)."""
    f, _, kh, kw = w.shape
    ho = _out_size(x.shape[2], kh, stride, padding)
    wo = _out_size(x.shape[3], kw, stride, padding)
    p = padding
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    out = np.zeros((x.shape[0], f, ho, wo))
    for i in range(kh):
        for j in range(kw):
            patch = xp[_window(i, j, ho, wo, stride)]  # (N, C, Ho, Wo)
            out += np.einsum("nchw,fc->nfhw", patch, w[:, :, i, j])
    out += b[None, :, None, None]
    return out, (x.shape, xp, w, stride, padding)


def conv2d_backward(dout, cache):
    """dout (N, F, Ho, Wo) -> dx (N, C, H, W), dw (F, C, KH, KW), db (F,)."""
    x_shape, xp, w, s, p = cache
    _, _, kh, kw = w.shape
    ho, wo = dout.shape[2:]
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for i in range(kh):
        for j in range(kw):
            win = _window(i, j, ho, wo, s)
            dw[:, :, i, j] = np.einsum("nfhw,nchw->fc", dout, xp[win])
            dxp[win] += np.einsum("nfhw,fc->nchw", dout, w[:, :, i, j])
    h, wd = x_shape[2:]
    return dxp[:, :, p:p + h, p:p + wd], dw, dout.sum(axis=(0, 2, 3))


# --- max-pool ------------------------------------------------------------------------------------


def maxpool2d_forward(x, kernel: int = 2, stride: int | None = None, padding: int = 0):
    """x (N, C, H, W) -> (N, C, Ho, Wo), the max over each kernel x kernel window; padding is
    -inf (it never wins), like torch's max_pool2d."""
    s, p = stride or kernel, padding
    if p > kernel // 2:
        raise ValueError(f"padding {p} must be at most half the kernel ({kernel})")
    ho, wo = _out_size(x.shape[2], kernel, s, p), _out_size(x.shape[3], kernel, s, p)
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-np.inf)
    # (K*K, N, C, Ho, Wo): every window's candidates, offset by offset
    cand = np.stack([xp[_window(i, j, ho, wo, s)] for i in range(kernel) for j in range(kernel)])
    best = cand.argmax(axis=0)  # which offset won, per output pixel (the first of equals)
    out = np.take_along_axis(cand, best[None], axis=0)[0]
    return out, (x.shape, xp.shape, best, kernel, s, p)


def maxpool2d_backward(dout, cache):
    """The gradient goes to the input pixel that won each window (added up where windows
    overlap)."""
    x_shape, xp_shape, best, k, s, p = cache
    ho, wo = dout.shape[2:]
    dxp = np.zeros(xp_shape)
    for n, (i, j) in enumerate((i, j) for i in range(k) for j in range(k)):
        dxp[_window(i, j, ho, wo, s)] += dout * (best == n)
    h, w = x_shape[2:]
    return dxp[:, :, p:p + h, p:p + w]


# --- batch-norm ----------------------------------------------------------------------------------


class BatchNorm:
    """Batch normalisation over (N,) of (N, C) or over (N, H, W) of (N, C, H, W).

    Training: normalise with the batch's mean and biased variance, and move the running stats
    toward the batch's (running = (1 - momentum) * running + momentum * batch, the variance
    unbiased, n / (n - 1), as torch does). Eval: normalise with the running stats."""

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1):
        self.gamma, self.beta = np.ones(channels), np.zeros(channels)
        self.running_mean, self.running_var = np.zeros(channels), np.ones(channels)
        self.eps, self.momentum = eps, momentum

    @staticmethod
    def _axes(x):
        return (0,) if x.ndim == 2 else (0, 2, 3)

    def _shape(self, v, x):  # (C,) -> broadcastable against x
        return v if x.ndim == 2 else v[None, :, None, None]

    def forward(self, x, train: bool = True):
        axes = self._axes(x)
        if train:
            mean, var = x.mean(axis=axes), x.var(axis=axes)
            n = x.size // x.shape[1]
            m = self.momentum
            self.running_mean = (1 - m) * self.running_mean + m * mean
            self.running_var = (1 - m) * self.running_var + m * var * n / max(n - 1, 1)
        else:
            mean, var = self.running_mean, self.running_var
        inv_std = 1.0 / np.sqrt(var + self.eps)
        xhat = (x - self._shape(mean, x)) * self._shape(inv_std, x)
        out = self._shape(self.gamma, x) * xhat + self._shape(self.beta, x)
        return out, (xhat, inv_std, train)

    def backward(self, dout, cache):
        """-> dx, dgamma, dbeta. With dxhat = gamma * dout: in eval dx = inv_std * dxhat; in
        training the mean and variance depend on x too, which gives, per channel,
        dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))."""
        xhat, inv_std, train = cache
        axes = self._axes(dout)
        dgamma, dbeta = (dout * xhat).sum(axis=axes), dout.sum(axis=axes)
        dxhat = dout * self._shape(self.gamma, dout)
        if train:
            dxhat = dxhat - dxhat.mean(axis=axes, keepdims=True) \
                - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True)
        return dxhat * self._shape(inv_std, dout), dgamma, dbeta


# --- softmax cross-entropy -----------------------------------------------------------------------


def softmax_cross_entropy(logits, labels):
    """logits (N, K), labels (N,) ints -> (mean loss, dlogits). The max is subtracted before exp
    so large logits don't overflow; the gradient is (softmax - one_hot) / N."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = logits.shape[0]
    loss = -log_probs[np.arange(n), labels].mean()
    dlogits = np.exp(log_probs)
    dlogits[np.arange(n), labels] -= 1.0
    return loss, dlogits / n
