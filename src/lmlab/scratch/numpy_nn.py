"""Week 1 in NumPy: a perceptron, and a 2-layer network that solves XOR with backprop by hand.

The perceptron (Rosenblatt) predicts step(w . x + b) and, on each mistake, moves the line toward
the point: w += lr * (y - y_hat) * x. On a linearly separable set it stops making mistakes after
at most (R / gamma)^2 updates (R: the largest |(x, 1)|, gamma: the margin of a separating line
in those augmented coordinates; Novikoff's theorem). AND and OR are separable; XOR is not: no
line puts (0,1),(1,0) on one side and (0,0),(1,1) on the other, so it never gets all four right.

``XorMLP`` puts a tanh hidden layer before a sigmoid output. The hidden units carve the plane
with two lines and the output combines them, which XOR needs. Its ``loss_and_grads`` is the
chain rule written out, layer by layer, from the binary cross-entropy down.
"""

from __future__ import annotations

import numpy as np


class Perceptron:
    def __init__(self, n_in: int, lr: float = 1.0):
        self.w, self.b, self.lr = np.zeros(n_in), 0.0, lr

    def predict(self, X):
        return (X @ self.w + self.b > 0).astype(float)

    def fit(self, X, y, epochs: int = 100, seed: int = 0) -> list[int]:
        """Sweep the rows (in a fresh random order each epoch) and update on each mistake; stop
        after an epoch without one. Returns the mistakes of each epoch."""
        rng = np.random.default_rng(seed)
        mistakes = []
        for _ in range(epochs):
            wrong = 0
            for i in rng.permutation(len(X)):
                err = y[i] - self.predict(X[i:i + 1])[0]  # -1, 0 or +1
                if err:
                    self.w += self.lr * err * X[i]
                    self.b += self.lr * err
                    wrong += 1
            mistakes.append(wrong)
            if wrong == 0:
                break
        return mistakes


def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1 / (1 + e^-z), without overflow for large |z|


class XorMLP:
    """x (N, 2) -> h = tanh(x W1^T + b1) (N, H) -> p = sigmoid(h w2 + b2) (N,)."""

    def __init__(self, hidden: int = 8, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.params = {"W1": rng.normal(0, 1.0, (hidden, 2)), "b1": np.zeros(hidden),
                       "w2": rng.normal(0, 1.0 / np.sqrt(hidden), hidden), "b2": np.zeros(1)}

    def forward(self, X):
        P = self.params
        h = np.tanh(X @ P["W1"].T + P["b1"])  # (N, H)
        return sigmoid(h @ P["w2"] + P["b2"]), h  # (N,), (N, H)

    def loss_and_grads(self, X, y):
        """Mean binary cross-entropy and its gradient for every parameter, by the chain rule."""
        P = self.params
        p, h = self.forward(X)
        z = h @ P["w2"] + P["b2"]
        # BCE from the logit z: softplus(z) - y z, stable for large |z|
        loss = np.mean(np.logaddexp(0.0, z) - y * z)
        dz = (p - y) / len(X)  # dL/dz for sigmoid + BCE, (N,)
        dh = np.outer(dz, P["w2"])  # (N, H)
        da = dh * (1.0 - h ** 2)  # through tanh, (N, H)
        grads = {"W1": da.T @ X, "b1": da.sum(axis=0), "w2": h.T @ dz, "b2": dz.sum(keepdims=True)}
        return float(loss), grads

    def train(self, X, y, steps: int = 2000, lr: float = 1.0, log=None) -> list[dict]:
        """Full-batch gradient descent; ``log(row)`` after each step; returns the rows."""
        history = []
        for step in range(steps):
            loss, grads = self.loss_and_grads(X, y)
            for k, g in grads.items():
                self.params[k] -= lr * g
            acc = float(np.mean((self.forward(X)[0] > 0.5) == (y > 0.5)))
            row = {"step": step + 1, "loss": loss, "acc": acc}
            history.append(row)
            if log is not None:
                log(row)
        return history
