"""Pruning by weight magnitude, as a size option next to quantization (no calibration data).

- ``unstructured``: in every projection of every decoder layer, the ``sparsity`` fraction of
  weights with the smallest |w| become exactly zero. The tensors keep their shape, so the
  dense file does not shrink; what shrinks is the count of non-zeros (and a sparse or
  compressed format). Embeddings and the LM head are left alone.
- ``structured``: the ``sparsity`` fraction of MLP channels with the smallest weight norm
  (||gate row||^2 + ||up row||^2 + ||down column||^2) is cut out of every layer, the same
  count per layer so ``intermediate_size`` stays one number: a smaller dense model.

For calibration-based depth/width pruning healed by distillation see ``lmlab.models.prune``.
Legend: I MLP width, D hidden size.
"""

from __future__ import annotations

import torch

from lmlab.errors import ConfigError, UserError

KINDS = ("unstructured", "structured")
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _layers(model):
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise UserError("pruning expects a decoder with model.model.layers (llama family)")
    return layers


def _projections(model) -> list[tuple[str, torch.nn.Linear]]:
    return [(f"layers.{i}.{name}", mod) for i, layer in enumerate(_layers(model))
            for name, mod in layer.named_modules()
            if isinstance(mod, torch.nn.Linear) and name.rsplit(".", 1)[-1] in PROJECTIONS]


@torch.no_grad()
def magnitude_unstructured(model, sparsity: float) -> dict:
    """Zero exactly round(sparsity * n) smallest-|w| weights in each projection."""
    zeroed = total = 0
    for _, lin in _projections(model):
        w = lin.weight
        k = round(sparsity * w.numel())
        if k:
            idx = torch.topk(w.abs().flatten(), k, largest=False).indices
            w.view(-1)[idx] = 0.0
        zeroed, total = zeroed + k, total + w.numel()
    return {"kind": "unstructured", "sparsity": sparsity, "zeroed": zeroed,
            "pruned_params": total}


def _slice_linear(lin: torch.nn.Linear, keep: torch.Tensor, dim: int) -> torch.nn.Linear:
    w = lin.weight.index_select(dim, keep).clone()
    out = torch.nn.Linear(w.shape[1], w.shape[0], bias=lin.bias is not None,
                          dtype=w.dtype, device=w.device)
    out.weight.data.copy_(w)
    if lin.bias is not None:
        out.bias.data.copy_(lin.bias if dim == 1 else lin.bias.index_select(0, keep))
    return out


@torch.no_grad()
def magnitude_structured(model, sparsity: float) -> dict:
    """Cut round(sparsity * I) lowest-norm MLP channels from every layer."""
    layers = _layers(model)
    width = layers[0].mlp.gate_proj.out_features  # I
    n_cut = round(sparsity * width)
    if n_cut >= width:
        raise UserError(f"sparsity {sparsity} would remove all {width} MLP channels")
    for layer in layers:
        mlp = layer.mlp
        score = (mlp.gate_proj.weight.pow(2).sum(1) + mlp.up_proj.weight.pow(2).sum(1)
                 + mlp.down_proj.weight.pow(2).sum(0))  # (I,)
        keep = torch.topk(score, width - n_cut).indices.sort().values
        mlp.gate_proj = _slice_linear(mlp.gate_proj, keep, 0)  # (I', D)
        mlp.up_proj = _slice_linear(mlp.up_proj, keep, 0)
        mlp.down_proj = _slice_linear(mlp.down_proj, keep, 1)  # (D, I')
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = width - n_cut
    model.config.intermediate_size = width - n_cut
    return {"kind": "structured", "sparsity": sparsity, "mlp_channels_before": width,
            "mlp_channels_after": width - n_cut, "removed_params": n_cut * 3 * model.config.
            hidden_size * len(layers)}


def prune(model, kind: str, sparsity: float) -> dict:
    if kind not in KINDS:
        raise ConfigError(f"prune: '{kind}' is not one of {', '.join(KINDS)}")
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"sparsity: {sparsity} must be in [0, 1)")
    fn = magnitude_unstructured if kind == "unstructured" else magnitude_structured
    return fn(model, sparsity)


def count_zeros(model) -> tuple[int, int]:
    """(zeros, total) over the decoder projections."""
    zeros = total = 0
    for _, lin in _projections(model):
        zeros += int((lin.weight == 0).sum())
        total += lin.weight.numel()
    return zeros, total
