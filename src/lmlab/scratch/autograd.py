"""A scalar autograd engine and a tiny MLP on it (the micrograd exercise, week 4).

``Value`` holds one float, the ``Value``s it was computed from and a closure that pushes its
gradient back to them. ``backward()`` orders the graph topologically and runs those closures from
the output down, so every node's gradient is complete before it is passed on. Gradients add up
(``+=``): a value used twice receives both contributions, and calling ``backward`` again without
``zero_grad`` accumulates, as in PyTorch.

    from lmlab.scratch.autograd import Value
    a, b = Value(2.0), Value(-3.0)
    y = (a * b + a ** 2).tanh()
    y.backward()          # a.grad, b.grad now hold dy/da, dy/db

``MLP`` stacks ``Layer``s of ``Neuron``s (relu or tanh between layers, linear output) and
``train_mlp`` fits it to a toy 2-D set (``toydata.moons``) with the hinge loss and plain SGD.
"""

from __future__ import annotations

import math
import random


class Value:
    """One scalar of a computation graph and its gradient d(output)/d(self)."""

    __slots__ = ("_parents", "_push", "data", "grad", "op")

    def __init__(self, data: float, parents: tuple = (), op: str = ""):
        self.data = float(data)
        self.grad = 0.0
        self._parents = parents
        self._push = None  # adds self.grad times the local derivative to each parent's grad
        self.op = op

    def __repr__(self) -> str:
        return f"Value(data={self.data:.6g}, grad={self.grad:.6g})"

    # --- the primitive operations: a value and its local derivatives -------------------------

    def __add__(self, other):
        other = _lift(other)
        out = Value(self.data + other.data, (self, other), "+")

        def push():
            self.grad += out.grad
            other.grad += out.grad
        out._push = push
        return out

    def __mul__(self, other):
        other = _lift(other)
        out = Value(self.data * other.data, (self, other), "*")

        def push():
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad
        out._push = push
        return out

    def __pow__(self, k):
        if not isinstance(k, (int, float)):
            raise TypeError("Value ** k takes a number k (a constant exponent)")
        out = Value(self.data ** k, (self,), f"**{k}")

        def push():
            self.grad += k * self.data ** (k - 1) * out.grad
        out._push = push
        return out

    def _unary(self, data: float, slope: float, op: str):
        """``op(self)`` = data, with d op / d self = slope."""
        out = Value(data, (self,), op)

        def push():
            self.grad += slope * out.grad
        out._push = push
        return out

    def relu(self):
        return self._unary(max(self.data, 0.0), float(self.data > 0), "relu")

    def tanh(self):
        t = math.tanh(self.data)
        return self._unary(t, 1.0 - t * t, "tanh")

    def exp(self):
        e = math.exp(self.data)
        return self._unary(e, e, "exp")

    def log(self):
        return self._unary(math.log(self.data), 1.0 / self.data, "log")

    # --- the rest are built from those ---------------------------------------------------------

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        return self + (-_lift(other))

    def __truediv__(self, other):
        return self * _lift(other) ** -1

    def __radd__(self, other):
        return self + other

    def __rmul__(self, other):
        return self * other

    def __rsub__(self, other):
        return _lift(other) - self

    def __rtruediv__(self, other):
        return _lift(other) / self

    # --- backpropagation -----------------------------------------------------------------------

    def backward(self) -> None:
        """Add d(self)/d(node) to every node's ``grad`` (self's own gradient is seeded with 1)."""
        order, seen = [], set()
        stack = [(self, False)]
        while stack:  # iterative depth-first search: deep graphs don't hit the recursion limit
            node, children_done = stack.pop()
            if children_done:
                order.append(node)
            elif id(node) not in seen:
                seen.add(id(node))
                stack.append((node, True))
                stack.extend((p, False) for p in node._parents if id(p) not in seen)
        self.grad += 1.0
        for node in reversed(order):  # output first: a node's grad is complete when pushed
            if node._push is not None:
                node._push()


def _lift(x) -> Value:
    return x if isinstance(x, Value) else Value(x)


# --- a tiny MLP -------------------------------------------------------------------------------


class Neuron:
    """w . x + b, then ``act`` ("relu", "tanh" or "linear")."""

    def __init__(self, n_in: int, rng: random.Random, act: str = "relu"):
        self.w = [Value(rng.uniform(-1.0, 1.0)) for _ in range(n_in)]
        self.b = Value(0.0)
        self.act = act

    def __call__(self, x):
        z = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
        return z if self.act == "linear" else getattr(z, self.act)()

    def parameters(self) -> list[Value]:
        return [*self.w, self.b]


class Layer:
    def __init__(self, n_in: int, n_out: int, rng: random.Random, act: str = "relu"):
        self.neurons = [Neuron(n_in, rng, act) for _ in range(n_out)]

    def __call__(self, x):
        out = [n(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out

    def parameters(self) -> list[Value]:
        return [p for n in self.neurons for p in n.parameters()]


class MLP:
    """``MLP(2, [16, 16, 1])``: hidden layers with ``act`` (relu or tanh), a linear last layer;
    weights drawn uniformly from [-1, 1] (micrograd's choice), biases 0."""

    def __init__(self, n_in: int, sizes: list[int], act: str = "relu", seed: int = 0):
        if act not in ("relu", "tanh"):
            raise ValueError(f"act must be relu or tanh, not {act!r}")
        rng = random.Random(seed)
        dims = [n_in, *sizes]
        self.layers = [Layer(dims[i], dims[i + 1], rng, "linear" if i == len(sizes) - 1 else act)
                       for i in range(len(sizes))]

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
            x = x if isinstance(x, list) else [x]
        return x[0] if len(x) == 1 else x

    def parameters(self) -> list[Value]:
        return [p for layer in self.layers for p in layer.parameters()]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = 0.0


def hinge_loss(model: MLP, X, y, alpha: float = 1e-4):
    """Mean max(0, 1 - y * score) over the rows (labels -1/+1) plus alpha * sum(w^2), and the
    accuracy of sign(score)."""
    scores = [model([Value(float(v)) for v in row]) for row in X]
    margins = [(1.0 - float(yi) * s).relu() for yi, s in zip(y, scores)]
    data_loss = sum(margins, Value(0.0)) / len(margins)
    reg = alpha * sum((p * p for p in model.parameters()), Value(0.0))
    acc = float(sum((s.data > 0) == (yi > 0) for yi, s in zip(y, scores)) / len(y))
    return data_loss + reg, acc


def accuracy(model: MLP, X, y) -> float:
    """The share of rows where sign(score) matches the label (-1/+1)."""
    return sum((model([float(v) for v in row]).data > 0) == (yi > 0)
               for row, yi in zip(X, y)) / len(y)


def train_mlp(model: MLP, X, y, steps: int = 100, lr: float = 0.5, log=None) -> list[dict]:
    """Full-batch SGD on the hinge loss, the step size decayed linearly to 10% of ``lr``.
    Calls ``log(row)`` after each step and returns the rows ({step, loss, acc, lr})."""
    history = []
    for step in range(steps):
        loss, acc = hinge_loss(model, X, y)
        model.zero_grad()
        loss.backward()
        step_lr = lr * (1.0 - 0.9 * step / max(steps, 1))
        for p in model.parameters():
            p.data -= step_lr * p.grad
        row = {"step": step + 1, "loss": loss.data, "acc": acc, "lr": step_lr}
        history.append(row)
        if log is not None:
            log(row)
    return history
