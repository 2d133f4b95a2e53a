"""The precision of the weights a decode step reads: ``decode_weights`` = fp32 | bf16 | int8.

Why: a batch-1 decode step reads every weight once per token, so its speed is the memory
bandwidth divided by the bytes of weights per token (4 per weight in fp32). Rounding the
weights to bfloat16 (2 bytes) or to int8 in blocks (1 byte, plus a 2-byte scale per 32) reads
half or about a quarter of that.

What a precision means, in every path: the model's weights are rounded once (``rounded``).
bf16: the products then run in fp32 on the rounded weights. int8 is llama.cpp's q8_0
arithmetic: the weights in blocks of ``QBLOCK`` (32) columns, each block symmetric with its own
scale stored in fp16, and each product's input vector rounded the same way at run time, per
block of 32 with an fp32 scale (``quantize_acts``), so that the C step adds exact integer dot
products per block (VNNI / AVX2 byte products) and scales them in fp32. The C step
(``infer.native``) reads the narrow copies; the torch step (prefills, wide batches, no compiler)
runs oneDNN-packed fp32 copies of the same rounded weights on inputs rounded by
``quantize_acts`` (``infer.packed``), so the two agree up to fp32 rounding of the sums (and an
input that lands within fp32 rounding of a half step can round to the other neighbour).
The input embedding, the norms and the KV cache stay fp32 (one embedding row is read a token).

int8 rounding of a block v (weights: 32 columns of a row; inputs: 32 entries of a vector):
``scale = max|v| / 127`` (weights: then rounded to fp16), ``q = round(v / scale)`` in -127 ..
127 (half to even; an all-zero block: scale 0, q 0), so ``|v - q * scale| <= scale / 2``
elementwise (weights: plus the fp16 scale's rounding, < 127 * 2^-11 * scale). Why blocks: one
scale per 576- or 1536-wide row let SmolLM2's outlier weights set the step for the whole row;
greedy tokens agreed with fp32 on 37.5% of the bench prompt's positions (session 18), and per
32-column blocks keep each outlier's damage inside its block (docs/generate.md).
"""

from __future__ import annotations

import torch

from lmlab.errors import ConfigError

WEIGHTS = ("fp32", "bf16", "int8")
BYTES = {"fp32": 4.0, "bf16": 2.0, "int8": 1.0}  # per weight (int8: + 2 per block for its scale)
QBLOCK = 32  # int8: columns (weights) / entries (inputs) per scale


def weights_of(pack) -> str | None:
    """The weight precision a ``pack`` argument asks for: False / None -> None (no packed
    weights: the plain step), True -> "fp32", or one of ``WEIGHTS``."""
    if pack is None or pack is False:
        return None
    if pack is True:
        return "fp32"
    if pack in WEIGHTS:
        return pack
    raise ConfigError(f"decode_weights: expected one of {', '.join(WEIGHTS)}, got {pack!r}")


def blocks(K: int) -> int:
    """int8 blocks a row of ``K`` columns has (the last one shorter when K is not a multiple
    of ``QBLOCK``)."""
    return -(-K // QBLOCK)


def _split(v: torch.Tensor) -> torch.Tensor:
    """(..., K) -> (..., blocks(K), QBLOCK), the last block padded with zeros."""
    K = v.shape[-1]
    pad = blocks(K) * QBLOCK - K
    if pad:
        v = torch.nn.functional.pad(v, (0, pad))
    return v.reshape(*v.shape[:-1], -1, QBLOCK)


def quantize_blocks(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 of a 2-D weight (out, in) in blocks of ``QBLOCK`` columns -> (q int8
    (out, in), scale fp32 (out, blocks(in)), each scale an fp16 value), ``w ~ q * scale`` per
    block (``dequantize_blocks``)."""
    w = w.detach().float()
    R, K = w.shape
    v = _split(w)
    scale = (v.abs().amax(-1) / 127.0).half().float()
    div = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(v / div[..., None]).clamp_(-127, 127)
    q = torch.where(scale[..., None] > 0, q, torch.zeros_like(q))
    return q.reshape(R, -1)[:, :K].to(torch.int8), scale


def dequantize_blocks(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The fp32 weight an int8 ``(q, scale)`` of ``quantize_blocks`` stands for."""
    R, K = q.shape
    return (_split(q.float()) * scale[..., None]).reshape(R, -1)[:, :K]


def quantize_acts(x: torch.Tensor) -> torch.Tensor:
    """``x`` (..., K) as an int8 product's input sees it, in fp32: each block of ``QBLOCK``
    entries of the last dimension rounded to ``round(x / s) * s``, s = max|block| / 127 (fp32;
    what native.c's ``quantize_x`` computes, bit for bit)."""
    K = x.shape[-1]
    v = _split(x.float())
    s = v.abs().amax(-1, keepdim=True) / 127.0
    div = torch.where(s > 0, s, torch.ones_like(s))
    out = torch.round(v / div).clamp_(-127, 127) * s
    return out.reshape(*x.shape[:-1], -1)[..., :K]


def acts_hook(mod, args):
    """A forward pre-hook: the module's input through ``quantize_acts`` (a model that computes
    what the int8 decode step computes, ``rounded_model``)."""
    return (quantize_acts(args[0]),) + tuple(args[1:])


def rounded(w: torch.Tensor, weights: str) -> torch.Tensor:
    """``w`` (fp32) as the step at ``weights`` sees it, in fp32: itself, rounded to bfloat16
    (nearest even), or quantized to int8 in blocks and back (``quantize_blocks``)."""
    if weights == "fp32":
        return w
    if weights == "bf16":
        return w.detach().to(torch.bfloat16).float()
    if weights == "int8":
        return dequantize_blocks(*quantize_blocks(w))
    raise ConfigError(f"decode_weights: expected one of {', '.join(WEIGHTS)}, got {weights!r}")


def weight_bytes(model, weights: str) -> int:
    """Bytes of weights one batch-1 decode step reads at ``weights``: every projection and the
    LM head at that precision (int8: plus a 2-byte scale per block of 32), the norms in fp32 and one
    fp32 row of the input embedding (a tied head counts once as the head)."""
    m, total = model.model, 0
    mats = [model.lm_head.weight]
    for layer in m.layers:
        a, mlp = layer.self_attn, layer.mlp
        mats += [a.q_proj.weight, a.k_proj.weight, a.v_proj.weight, a.o_proj.weight,
                 mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight]
        total += 4 * (layer.input_layernorm.weight.numel()
                      + layer.post_attention_layernorm.weight.numel())
    for w in mats:
        total += int(w.numel() * BYTES[weights])
        total += 2 * w.shape[0] * blocks(w.shape[1]) if weights == "int8" else 0
    return total + 4 * (m.norm.weight.numel() + m.embed_tokens.weight.shape[1])


@torch.no_grad()
def rounded_model(model, weights: str):
    """A copy of ``model`` whose projections and LM head hold their ``weights``-rounded values
    in fp32 (``rounded``): what every decode step at ``weights`` computes with, as a plain
    model (perplexity over whole windows, tests). The input embedding and the norms stay fp32;
    a head tied to the embedding becomes its own rounded copy. int8: each of these products
    also rounds its input (``acts_hook``), as the int8 step does."""
    import copy

    out = copy.deepcopy(model)
    m = out.model
    for layer in m.layers:
        a, mlp = layer.self_attn, layer.mlp
        for lin in (a.q_proj, a.k_proj, a.v_proj, a.o_proj, mlp.gate_proj, mlp.up_proj,
                    mlp.down_proj):
            lin.weight.copy_(rounded(lin.weight, weights))
            if weights == "int8":
                lin.register_forward_pre_hook(acts_hook)
    head = out.lm_head
    if weights == "int8":
        head.register_forward_pre_hook(acts_hook)
    w = rounded(head.weight, weights)
    if head.weight.data_ptr() == m.embed_tokens.weight.data_ptr():
        head.weight = torch.nn.Parameter(w.clone(), requires_grad=False)
    else:
        head.weight.copy_(w)
    return out
