"""The C int8 products (native.c, ``decode_weights=int8``): each kernel (AVX-512 VNNI, AVX2 byte
products, plain C; ``LMLAB_NATIVE_ISA`` / the ``isa`` argument asks for a lower one, so every
fallback runs on any x86 CPU that has it) equals its torch reference product, the float64
product of the block-rounded weights and the block-rounded inputs (precision.quantize_blocks,
quantize_acts), within fp32 rounding of its sums; a whole decode step through a forced fallback
equals the default kernel's; the block layout reads back."""

import pytest
import torch

from lmlab.infer import native
from lmlab.infer.fastpath import LlamaStep
from lmlab.infer.packed import can_pack, packed_linears
from lmlab.infer.precision import (
    QBLOCK,
    blocks,
    dequantize_blocks,
    quantize_acts,
    quantize_blocks,
)
from tests.tolerance import fp32_tol, sum_terms

C = pytest.mark.skipif(not native.available(), reason=f"no native step: {native.why_not()}")
ORDER = ["generic", "avx2", "avx512"]


def _have(isa: str) -> bool:
    """The CPU runs kernel ``isa`` (a kernel it lacks falls back to the best it has)."""
    return native.int8_kernel(isa) == isa


def _tol(q, scale, xq_rows, K) -> torch.Tensor:
    """Per output: fp32 rounding of the kernels' sums. Each block's integer dot is exact (in
    int32, converted exactly: below 2^24); then per block one product by (weight scale x input
    scale) and the adds of the blocks, in lanes and a final reduction (at most blocks(K) + 16
    roundings; VNNI also adds 128 x sum(x_q) into each block and takes it off after, so its
    intermediates reach sum_b |ws_b xs_b| (sum |q x_q| + 128 |sum x_q|)): 4 x terms x eps x
    that size (tests/tolerance.py)."""
    xs = xq_rows.abs().amax(-1)  # (M, NB) per input block: 127 x its scale
    sx = xs / 127
    R = q.shape[0]
    qb = torch.nn.functional.pad(q.double(), (0, blocks(K) * QBLOCK - K)).view(R, -1, QBLOCK)
    size = torch.zeros(xq_rows.shape[0], R, dtype=torch.float64)
    for j in range(xq_rows.shape[0]):
        xi = (xq_rows[j] / torch.where(sx[j] > 0, sx[j], 1)[:, None]).round()  # (NB, 32) ints
        dot = (qb.abs() * xi.abs()).sum(-1) + 128 * xi.sum(-1).abs()  # (R, NB)
        size[j] = (scale.double() * sx[j].double() * dot).sum(-1)
    return fp32_tol(sum_terms(blocks(K) + 16)) * size


@C
@pytest.mark.parametrize("isa", ORDER)
@pytest.mark.parametrize("R,K,M", [(7, 576, 1), (5, 100, 3), (9, 1536, 2), (3, 64, 8),
                                   (4, 544, 1), (33, 1024, 5)])
def test_each_kernel_equals_its_torch_reference(isa, R, K, M):
    """Shapes: SmolLM2's widths, a width that is not whole blocks (100: a short last block), an
    odd number of blocks (544 = 17: VNNI's pairs then one block in C), several inputs, and
    inputs with an outlier and an all-zero block (scale 0)."""
    if not _have(isa):
        pytest.skip(f"this CPU has no {isa} int8 kernel (best: {native.int8_kernel()})")
    g = torch.Generator().manual_seed(R * K + M)
    w = torch.randn(R, K, generator=g)
    w[0, :QBLOCK] = 0.0  # an all-zero weight block
    x = torch.randn(M, K, generator=g) * 3
    x[0, 5] = 40.0  # an outlier: its block's step is large, the others' are not
    x[-1, QBLOCK:2 * QBLOCK] = 0.0  # an all-zero input block (when K has two)
    block = native.int8_block(w)
    q, scale = quantize_blocks(w)
    got, ran = native.q8_matvec(block, R, x, isa)
    assert ran == isa
    xr = quantize_acts(x)  # the rounded inputs, in fp32
    ref = xr.double() @ dequantize_blocks(q, scale).double().T  # (M, R)
    xq_rows = torch.nn.functional.pad(x, (0, blocks(K) * QBLOCK - K)).view(M, -1, QBLOCK)
    tol = _tol(q, scale, xq_rows, K)
    assert ((got.double() - ref).abs() <= tol).all(), float(((got.double() - ref).abs()
                                                            / tol).max())
    # the rounding of the inputs shows: far beyond the tolerance from the fp32-input product
    plain = x.double() @ dequantize_blocks(q, scale).double().T
    assert ((got.double() - plain).abs() > 10 * tol).any()


@C
def test_the_block_layout_reads_back():
    g = torch.Generator().manual_seed(4)
    w = torch.randn(6, 100, generator=g)
    block = native.int8_block(w)
    assert block.dtype == torch.uint8 and block.numel() == 6 * (100 + 2 * blocks(100))
    q, scale = native.int8_parts(block, 6, 100)
    q2, s2 = quantize_blocks(w)
    assert torch.equal(q, q2) and torch.equal(scale, s2)
    # the weights as bytes q + 128 (VNNI's unsigned operand), after the fp16 scales
    assert torch.equal(block[2 * 6 * blocks(100):].view(6, 100).long(), q2.long() + 128)


def test_the_isa_variable_is_checked(monkeypatch):
    monkeypatch.setenv("LMLAB_NATIVE_ISA", "avx2")
    assert native.isa_wanted() == "avx2"
    monkeypatch.setenv("LMLAB_NATIVE_ISA", "sse9")
    with pytest.raises(ValueError, match="LMLAB_NATIVE_ISA: one of auto, generic, avx2"):
        native.isa_wanted()


@C
@pytest.mark.skipif(not can_pack(torch.zeros(2, 2)), reason="no oneDNN in this torch")
@pytest.mark.parametrize("isa", ["generic", "avx2"])
def test_a_step_through_a_forced_fallback_equals_the_default(model, isa, monkeypatch):
    """A prefill and one-token steps of the tiny model at int8 (batch 2): the step built under
    ``LMLAB_NATIVE_ISA=<isa>`` gives the default kernel's logits up to fp32 rounding (tolerance
    from the model's size, tests/tolerance.py forward_tol)."""
    from types import SimpleNamespace

    from lmlab.models.tiny import PRESETS
    from tests.tolerance import forward_tol

    if not _have(isa):
        pytest.skip(f"this CPU has no {isa} int8 kernel")
    tol = forward_tol(SimpleNamespace(**PRESETS["llama"]))
    torch.manual_seed(6)
    ids = torch.randint(0, model.config.vocab_size, (2, 7))
    pos = torch.arange(7).expand(2, 7)
    outs = {}
    for want in ("auto", isa):
        monkeypatch.setenv("LMLAB_NATIVE_ISA", want)
        with torch.inference_mode():
            st = LlamaStep(model, None, 2, 7, lin=packed_linears(model, "int8"))
            nat = st._native_step()
            assert nat is not None and nat.cfg.isa == native.ISA[want]
            outs[want] = torch.cat([st.step(ids[:, :5], pos[:, :5], 5, None),
                                    st.step(ids[:, 5:6], pos[:, 5:6], 6, None),
                                    st.step(ids[:, 6:], pos[:, 6:], 7, None)], 1)
    a, b = outs[isa], outs["auto"]
    torch.testing.assert_close(a, b, rtol=0, atol=tol * float(b.abs().max()))
