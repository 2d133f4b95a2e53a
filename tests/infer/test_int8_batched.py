"""The int8 products of several inputs at once (native.c's q8_rows: each weight block loaded
once for up to 8 inputs, for batch decoding, speculative checks and prefills) equal the
products of the same inputs one at a time, bit for bit, for each kernel (AVX-512 VNNI, AVX2,
plain C; a kernel the CPU lacks is skipped): each input's arithmetic is the same sequence of
operations whatever the number of inputs beside it, so batching never changes a token."""

import pytest
import torch

from lmlab.infer import native
from lmlab.infer.precision import QBLOCK

C = pytest.mark.skipif(not native.available(), reason=f"no native step: {native.why_not()}")


@C
@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
@pytest.mark.parametrize("R,K,M", [(5, 576, 2), (7, 544, 3), (4, 100, 5), (3, 1536, 8),
                                   (6, 96, 11), (9, 1024, 17)])
def test_a_batch_equals_its_inputs_one_at_a_time(isa, R, K, M):
    """Widths: SmolLM2's (576, 1536), an odd number of blocks (544 = 17: a pair kernel's last
    block in C), a short last block (100), three blocks (96); inputs: 2 .. 17 (more than one
    group of each kernel's inputs at once: 3 for AVX2, 8 otherwise), one with an all-zero block
    and one with an outlier."""
    if native.int8_kernel(isa) != isa:
        pytest.skip(f"this CPU has no {isa} int8 kernel (best: {native.int8_kernel()})")
    g = torch.Generator().manual_seed(R * K + M)
    w = torch.randn(R, K, generator=g)
    x = torch.randn(M, K, generator=g) * 2
    x[0, :QBLOCK] = 0.0
    x[-1, 3] = 30.0
    block = native.int8_block(w)
    together, ran = native.q8_matvec(block, R, x, isa)
    assert ran == isa
    alone = torch.cat([native.q8_matvec(block, R, x[j:j + 1], isa)[0] for j in range(M)])
    assert torch.equal(together, alone), float((together - alone).abs().max())
    # and the products are not all zero (an empty kernel would pass the equality)
    assert together.abs().min() > 0


@C
@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
@pytest.mark.parametrize("K", [576, 100])
def test_inputs_are_rounded_as_quantize_acts_bit_for_bit(isa, K):
    """One-hot weight rows (each row's block: 127 at one column, scale fp16(1/127)) give
    out_r = (w_scale x s) x (127 q_r), one rounding of a product, from the C kernel's own
    rounded input q_r = round(x_r / s): equal bit for bit to the same product of
    precision.quantize_acts' q and s (vectors for whole blocks, scalars for a short last one:
    K = 100)."""
    if native.int8_kernel(isa) != isa:
        pytest.skip(f"this CPU has no {isa} int8 kernel (best: {native.int8_kernel()})")
    g = torch.Generator().manual_seed(K)
    x = torch.randn(3, K, generator=g) * 3
    x[1, 7] = -50.0
    x[2, :QBLOCK] = 0.0
    block = native.int8_block(torch.eye(K))
    got, _ = native.q8_matvec(block, K, x, isa)
    v = torch.nn.functional.pad(x, (0, -K % QBLOCK)).view(3, -1, QBLOCK)
    s = v.abs().amax(-1, keepdim=True) / 127.0
    q = torch.round(v / torch.where(s > 0, s, 1)).clamp(-127, 127)
    h = torch.tensor(1 / 127).half().float()
    want = ((h * s) * (127 * q)).view(3, -1)[:, :K]
    assert torch.equal(got, want), float((got - want).abs().max())
