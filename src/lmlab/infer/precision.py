"""The precision of the weights a decode step reads: ``decode_weights`` = fp32 | bf16 | int8.

Why: a batch-1 decode step reads every weight once per token, so its speed is the memory
bandwidth divided by the bytes of weights per token (4 per weight in fp32). Rounding the
weights to bfloat16 (2 bytes) or to int8 with one fp32 scale per output channel (1 byte)
reads half or a quarter of that; the products stay fp32 (inputs, accumulation, outputs).

What a precision means, in every path: the model's weights are rounded once (``rounded``) and
the decode runs on the rounded values in fp32. The C step (``infer.native``) reads the narrow
copies themselves (a bfloat16 weight widened in the kernel, an int8 row times its scale), the
torch step (prefills, wide batches, no compiler) runs oneDNN-packed fp32 copies of the same
rounded values (``infer.packed``), so the two agree up to fp32 rounding, as they do in fp32.
The input embedding, the norms and the KV cache stay fp32 (one embedding row is read a token).

int8 is weight-only and symmetric: per output row r, ``scale[r] = max|W[r]| / 127`` and
``q[r] = round(W[r] / scale[r])`` in -127 .. 127 (an all-zero row gets scale 1), so
``|W - q * scale| <= scale / 2`` elementwise.
"""

from __future__ import annotations

import torch

from lmlab.errors import ConfigError

WEIGHTS = ("fp32", "bf16", "int8")
BYTES = {"fp32": 4.0, "bf16": 2.0, "int8": 1.0}  # per weight (int8: + 4 per row for its scale)


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


def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8 of a 2-D weight (out, in) -> (q int8 (out, in), scale fp32
    (out,)), ``w ~ q * scale[:, None]``."""
    w = w.detach().float()
    amax = w.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale


def dequantize_rows(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The fp32 weight an int8 ``(q, scale)`` stands for."""
    return q.float() * scale[:, None]


def rounded(w: torch.Tensor, weights: str) -> torch.Tensor:
    """``w`` (fp32) as the step at ``weights`` sees it, in fp32: itself, rounded to bfloat16
    (nearest even), or quantized to int8 per row and back."""
    if weights == "fp32":
        return w
    if weights == "bf16":
        return w.detach().to(torch.bfloat16).float()
    if weights == "int8":
        return dequantize_rows(*quantize_rows(w))
    raise ConfigError(f"decode_weights: expected one of {', '.join(WEIGHTS)}, got {weights!r}")


def weight_bytes(model, weights: str) -> int:
    """Bytes of weights one batch-1 decode step reads at ``weights``: every projection and the
    LM head at that precision (int8: plus a 4-byte scale per row), the norms in fp32 and one
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
        total += int(w.numel() * BYTES[weights]) + (4 * w.shape[0] if weights == "int8" else 0)
    return total + 4 * (m.norm.weight.numel() + m.embed_tokens.weight.shape[1])


@torch.no_grad()
def rounded_model(model, weights: str):
    """A copy of ``model`` whose projections and LM head hold their ``weights``-rounded values
    in fp32 (``rounded``): what every decode step at ``weights`` computes with, as a plain
    model (perplexity over whole windows, tests). The input embedding and the norms stay fp32;
    a head tied to the embedding becomes its own rounded copy."""
    import copy

    out = copy.deepcopy(model)
    m = out.model
    for layer in m.layers:
        a, mlp = layer.self_attn, layer.mlp
        for lin in (a.q_proj, a.k_proj, a.v_proj, a.o_proj, mlp.gate_proj, mlp.up_proj,
                    mlp.down_proj):
            lin.weight.copy_(rounded(lin.weight, weights))
    head = out.lm_head
    w = rounded(head.weight, weights)
    if head.weight.data_ptr() == m.embed_tokens.weight.data_ptr():
        head.weight = torch.nn.Parameter(w.clone(), requires_grad=False)
    else:
        head.weight.copy_(w)
    return out
