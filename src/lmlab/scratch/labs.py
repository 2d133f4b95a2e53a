"""The week 1-5 "neural networks by hand" labs behind ``lmlab scratch``: each trains or checks
one from-scratch twin, calls ``log(row)`` with its curve and returns its headline numbers.

- ``perceptron``: AND, OR and XOR with the NumPy perceptron, and a separable set against the
  convergence bound.
- ``xor``: the 2-layer NumPy network with hand-written backprop, and how often it solves XOR
  from random starts at several hidden widths.
- ``micrograd``: the scalar ``Value`` MLP on two moons, accuracy on fresh points.
- ``layers``: every NumPy layer against torch (float64) and against finite differences.
"""

from __future__ import annotations

import time

import numpy as np

from lmlab.scratch import numpy_layers as L
from lmlab.scratch.gradcheck import check_grads
from lmlab.scratch.numpy_nn import Perceptron, XorMLP
from lmlab.scratch.toydata import GATE_X, GATES, moons, separable


def _say(msg: str) -> None:
    from lmlab.common import print0

    print0(f"[lmlab] {msg}")


def perceptron_lab(seed: int, log) -> dict:
    out = {}
    for gate in ("and", "or", "xor"):
        p = Perceptron(2)
        mistakes = p.fit(GATE_X, GATES[gate], epochs=50, seed=seed)
        for epoch, m in enumerate(mistakes, 1):
            log({"step": epoch, f"train/perceptron_{gate}_mistakes": m})
        acc = float(np.mean(p.predict(GATE_X) == GATES[gate]))
        out[gate] = {"accuracy": acc, "epochs": len(mistakes), "converged": mistakes[-1] == 0}
        _say(f"perceptron {gate.upper()}: accuracy {acc:.2f} after {len(mistakes)} epochs"
             + ("" if mistakes[-1] == 0 else " (never converges: not linearly separable)"))
    X, y, (w, b) = separable(200, margin=0.1, seed=seed)
    mistakes = Perceptron(2).fit(X, y, epochs=1000, seed=seed)
    u = np.append(w, b) / np.linalg.norm(np.append(w, b))
    Xa = np.hstack([X, np.ones((len(X), 1))])
    bound = (np.linalg.norm(Xa, axis=1).max() / np.min(np.abs(Xa @ u))) ** 2
    out["separable"] = {"points": len(X), "updates": int(sum(mistakes)),
                        "epochs": len(mistakes), "novikoff_bound": float(bound)}
    _say(f"perceptron, 200 separable points: {sum(mistakes)} updates in {len(mistakes)} epochs "
         f"(bound (R/gamma)^2 = {bound:.0f})")
    return out


def xor_lab(hidden: int, steps: int, lr: float, seeds: int, seed: int, log) -> dict:
    net = XorMLP(hidden, seed=seed)
    history = net.train(GATE_X, GATES["xor"], steps=steps, lr=lr)
    for row in history[::max(steps // 100, 1)] + history[-1:]:
        log({"step": row["step"], "train/xor_loss": row["loss"], "train/xor_acc": row["acc"]})
    solved_at = next((r["step"] for r in history if r["acc"] == 1.0), None)
    p = net.forward(GATE_X)[0]
    _say(f"XOR network ({hidden} hidden): loss {history[-1]['loss']:.4f}, outputs "
         f"{np.round(p, 3).tolist()} for (0,0) (0,1) (1,0) (1,1); all right from step {solved_at}")
    widths = sorted({2, 4, hidden})
    solved = {}
    for h in widths:  # how often plain gradient descent finds a solution from a random start
        ok = 0
        for s in range(seeds):
            hist = XorMLP(h, seed=1000 + s).train(GATE_X, GATES["xor"], steps=steps, lr=lr)
            ok += hist[-1]["acc"] == 1.0 and hist[-1]["loss"] < 0.05
        solved[str(h)] = ok
        _say(f"XOR from {seeds} random starts, {h} hidden units: {ok} solved")
    return {"hidden": hidden, "loss": history[-1]["loss"], "accuracy": history[-1]["acc"],
            "solved_at_step": solved_at, "outputs": p.tolist(), "seeds": seeds,
            "solved_of_seeds": solved}


def micrograd_lab(n: int, noise: float, width: int, steps: int, lr: float, seed: int,
                  log) -> dict:
    from lmlab.scratch.autograd import MLP, accuracy, train_mlp

    X, y = moons(n, noise=noise, seed=seed)
    model = MLP(2, [width, width, 1], seed=seed)
    t0 = time.perf_counter()

    def row(r):
        log({"step": r["step"], "train/moons_loss": r["loss"], "train/moons_acc": r["acc"]})
        if r["step"] % 10 == 0 or r["step"] == steps:
            _say(f"micrograd step {r['step']}/{steps}: hinge loss {r['loss']:.4f}, "
                 f"accuracy {r['acc']:.3f} ({time.perf_counter() - t0:.0f} s)")

    history = train_mlp(model, X, y, steps=steps, lr=lr, log=row)
    test_acc = accuracy(model, *moons(200, noise=noise, seed=seed + 1))
    _say(f"micrograd MLP 2-{width}-{width}-1 ({len(model.parameters())} parameters): "
         f"accuracy {test_acc:.3f} on 200 fresh points")
    return {"points": n, "parameters": len(model.parameters()), "loss": history[-1]["loss"],
            "train_accuracy": history[-1]["acc"], "test_accuracy": test_acc,
            "seconds": time.perf_counter() - t0}


# --- layers against torch and finite differences --------------------------------------------


def _layer_cases(rng):
    """(name, arrays, forward(**arrays) -> (out, cache), backward(dout, cache) -> grads in the
    order of arrays, torch function of the same arrays)."""
    import torch
    import torch.nn.functional as F

    def bn_forward(x, gamma, beta):
        bn = L.BatchNorm(x.shape[1])
        bn.gamma, bn.beta = gamma, beta
        out, cache = bn.forward(x, train=True)
        return out, (bn, cache)

    labels = rng.integers(0, 5, size=6)
    return [
        ("linear", {"x": rng.normal(size=(5, 7)), "w": rng.normal(size=(3, 7)),
                    "b": rng.normal(size=3)},
         L.linear_forward, L.linear_backward, F.linear),
        ("conv2d stride 2 pad 1", {"x": rng.normal(size=(2, 3, 7, 6)),
                                   "w": rng.normal(size=(4, 3, 3, 3)), "b": rng.normal(size=4)},
         lambda x, w, b: L.conv2d_forward(x, w, b, 2, 1), L.conv2d_backward,
         lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1)),
        ("maxpool 3 stride 2 pad 1", {"x": rng.normal(size=(2, 3, 7, 6))},
         lambda x: L.maxpool2d_forward(x, 3, 2, 1), lambda d, c: (L.maxpool2d_backward(d, c),),
         lambda x: F.max_pool2d(x, 3, 2, 1)),
        ("batchnorm (train)", {"x": rng.normal(size=(4, 3, 5, 5)), "gamma": rng.normal(size=3),
                               "beta": rng.normal(size=3)},
         bn_forward, lambda d, c: c[0].backward(d, c[1]),
         lambda x, gamma, beta: F.batch_norm(x, None, None, gamma, beta, training=True)),
        ("softmax cross-entropy", {"logits": 3 * rng.normal(size=(6, 5))},
         lambda logits: L.softmax_cross_entropy(logits, labels),  # (loss, dlogits as cache)
         lambda d, dlogits: (d * dlogits,),
         lambda logits: F.cross_entropy(logits, torch.tensor(labels))),
    ]


def _compare(arrays: dict, fwd, bwd, ref_fn, dout_rng) -> dict:
    """Max |ours - torch| of the output and of the gradients (for a random upstream gradient),
    and the gradients' relative error against finite differences."""
    import torch

    y, cache = fwd(**arrays)
    dout = dout_rng.normal(size=np.shape(y))
    grads = dict(zip(arrays, bwd(dout, cache)))
    tens = {k: torch.tensor(v, requires_grad=True) for k, v in arrays.items()}
    ref = ref_fn(*tens.values())  # positional: the torch functions name them otherwise
    ref.backward(torch.tensor(dout))
    numeric = check_grads(lambda: float(np.sum(fwd(**arrays)[0] * dout)), arrays, grads)
    return {"out_vs_torch": float(np.abs(y - ref.detach().numpy()).max()),
            "grad_vs_torch": max(float(np.abs(g - tens[k].grad.numpy()).max())
                                 for k, g in grads.items()),
            "grad_vs_numeric": max(numeric.values())}


def layers_lab(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for name, arrays, fwd, bwd, ref_fn in _layer_cases(rng):
        r = out[name] = _compare(arrays, fwd, bwd, ref_fn, rng)
        _say(f"{name:26s} max |ours - torch|: out {r['out_vs_torch']:.1e}, grads "
             f"{r['grad_vs_torch']:.1e}; grads vs finite differences {r['grad_vs_numeric']:.1e}")
    return out
