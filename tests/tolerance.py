"""Tolerances for comparing floating-point results, derived from the dtype and the computation.

Why a test needs one. torch picks its CPU kernels by the CPU's capability (AVX2 on most AMD
parts, AVX-512 on recent Intel and AMD, with AMX for bf16 matmuls) and splits reductions across
threads. A sum of the same fp32 numbers therefore adds in another order on another machine, and
exp/log come from other vectorised approximations: the same code gives results that differ in
the last bits. A tolerance must cover that and nothing more.

The bound. Each fp32 operation rounds its exact result by a relative error of at most u = eps/2,
with eps = 2**-23 (the gap between 1.0 and the next fp32). Summing n terms in any order is off
the exact sum by at most (n - 1) * u * S, S = sum |x_i|; two orders, each within that of the
exact sum, differ by at most 2 * (n - 1) * u * S < n * eps * S. Vectorised exp and log are
within a few ulp (torch's SLEEF kernels: 1 ulp, the scalar fallbacks: about 1), so an
elementwise step costs a couple of eps of its value's size. Counting every rounding on the
longest path as one "term" and allowing a factor 4 for the transcendental functions and for
intermediates that are somewhat larger than their bound:

    |a - b| <= 4 * terms * eps * scale

where `scale` bounds the magnitude of the intermediate values (for a sum, S; log-probabilities
of a few tokens: about 1; logits of a tiny model: a few units). Note the result itself may be
much smaller than its intermediates (a KL of 0.03 built from logs of size 1): the error follows
the intermediates, so a relative tolerance on the result alone (pytest.approx's default
rel=1e-6) is the wrong shape for fp32, and it fails on some CPUs and not on others.

Long sums. The worst case grows like n, which for a softmax over the 49152-token vocabulary is a
few percent: no test would be left. torch does not add a long fp32 sum into one running total;
it adds in SIMD lanes and blocks, and roundings of either sign cancel, so the difference between
two orders grows like sqrt(n) times the size of one rounding. `sum_terms(n)` counts such a sum
as 8 sqrt(n) terms (8 standard deviations of that random walk; it equals n at n = 64, and is n
below). A softmax's sum is of probabilities (scale 1), and its relative error lands on the
log-probabilities as an absolute one.

A model's outputs along two paths (a KV cache against a full forward, a batch against one row,
oneDNN's packed weights or the native C step against torch's matmuls): `forward_terms(config,
context)` counts the roundings on the longest path through a llama forward (per layer the norms
and products over the width, the scores, the softmax and the weighted sum over the context, the
MLP's product over its width; then the head). They are many and independent, so they count as
one long sum, and the error is relative to the largest output: `forward_tol(config, context)`
times max |output|.

These bounds are worst cases (the long sums' an 8-sigma one); real differences are far smaller.
A wrong formula is off by far more than any of these tolerances (a thousandth or more), so the
tests keep their power.

bf16 has eps = 2**-7: one rounding to bf16 is within 2**-8 relative (`BF16_U`).
"""

from __future__ import annotations

import math

import pytest

EPS_FP32 = 2.0 ** -23
EPS_BF16 = 2.0 ** -7
BF16_U = EPS_BF16 / 2  # the unit roundoff: one rounding to bf16 moves a value by at most this


def sum_terms(n: int) -> float:
    """How many terms a sum of n fp32 values counts for in fp32_tol: n up to 64, then 8 sqrt(n)."""
    return float(n) if n <= 64 else 8 * math.sqrt(n)


def fp32_tol(terms: float, scale: float = 1.0) -> float:
    """Absolute tolerance for an fp32 result of `terms` roundings on values up to `scale`.

    `terms` counts the elements summed plus the elementwise operations on the longest path
    (a mean over 8 log-softmaxes of 4 classes: about 8 + 4 + a handful). See the module's
    docstring for the derivation: 4 * terms * eps_fp32 * scale.
    """
    if terms < 1 or scale < 0:
        raise ValueError("terms >= 1 and scale >= 0")
    return 4 * terms * EPS_FP32 * scale


def approx_fp32(expected, terms: float, scale: float | None = None):
    """pytest.approx for a result computed by torch in fp32 (a number or a list of numbers).

    The tolerance is absolute, fp32_tol(terms, scale), with scale defaulting to the larger of
    1 and the largest |expected|: the size of the intermediates when the test gives none.
    """
    if scale is None:
        values = expected if isinstance(expected, (list, tuple)) else [expected]
        scale = max([1.0] + [abs(float(v)) for v in values])
    return pytest.approx(expected, rel=0, abs=fp32_tol(terms, scale))


def forward_terms(config, context: int) -> int:
    """Roundings on the longest path through a llama forward over `context` tokens.

    Per layer: two RMS norms and the q/k/v, o and gate/up products (6 sums over the width D), the
    scores over the head width, the softmax and the weighted sum over the context (2 x context),
    the down product over the MLP width I; then the head's product over D.
    """
    d, inner = config.hidden_size, config.intermediate_size
    head = d // config.num_attention_heads
    return config.num_hidden_layers * (6 * d + head + 2 * context + inner) + d


def forward_tol(config, context: int = 64) -> float:
    """Tolerance on a model's outputs from two paths, relative to the largest |output|.

    fp32_tol(sum_terms(forward_terms(...))): tiny:llama (2 layers, width 64, MLP 128) over
    64 tokens gives 1.4e-4 (the largest output's share that may differ).
    """
    return fp32_tol(sum_terms(forward_terms(config, context)))
