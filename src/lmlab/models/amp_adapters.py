"""LoRA's update added inside the base matmul's fp32 accumulator under CPU bf16 autocast.

peft's LoRA layer computes ``base_layer(x) + lora_B(lora_A(x)) * scale``. Under
``torch.autocast("cpu", bfloat16)`` both terms come out of their matmuls rounded to bf16, and
the sum is rounded again: an update smaller than half a bf16 step of the rounded base output
(8 bits of mantissa, ~0.2-0.4% of it) changes nothing. Early in training, when ``lora_B`` has
moved from zero by a few learning rates, that is most of the update. The gradients are those of
the rounded forward; the forward itself lags. Measured on SmolLM2-135M, LoRA r 16 on every
projection, lr 2e-4, one fp32 AdamW step: the same weights' loss was 7.448 in fp32 and 7.592
under autocast (7.68 for both before the step), so autocast trained about one step behind.

Inside ``lora_sums_in_matmul`` a LoRA layer computes the update first and hands it to the base
matmul as ``torch.addmm(update, x, W^T)``: the bf16 GEMM adds it to its fp32 accumulator and
rounds once (oneDNN's sum post-op; measured, the update's mean effect on the output is kept in
full, where mm-then-add keeps none of it). The output is still one bf16 tensor, so nothing
downstream changes dtype; the backward is ``addmm``'s (the gradient reaches the update and,
through W, the input, as with peft's add). Casting the base output up to fp32 for the add does
the same for the forward but cost 20% of an autocast LoRA step (fp32 activations and casts
downstream, session 22).

The layer's own input casts still go through the base layer's module call (so the training
loop's shared activation casts apply). A layer falls back to peft's forward when the fused form
does not apply: outside CPU bf16 autocast, adapters disabled or merged, several active adapters,
a variant (DoRA), extra forward arguments, or a base that is not a plain ``nn.Linear``.
The training loop applies it to every stage it runs under CPU bf16 autocast.
"""

from __future__ import annotations

import contextlib
import functools

import torch

BF16 = torch.bfloat16


def cpu_bf16_autocast() -> bool:
    """Whether CPU autocast to bf16 is on here (also train.amp_inputs' test)."""
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == BF16


def lora_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """peft LoRA layers over a plain ``nn.Linear`` (the layers the fused sum can serve)."""
    return [m for m in model.modules()
            if isinstance(getattr(m, "lora_A", None), torch.nn.ModuleDict)
            and type(getattr(m, "base_layer", None)) is torch.nn.Linear]


def _adapter(layer) -> str | None:
    """The one active vanilla LoRA adapter of a layer the fused form serves, else None."""
    if layer.disable_adapters or layer.merged:
        return None
    active = [a for a in layer.active_adapters if a in layer.lora_A]
    if len(active) != 1 or active[0] in getattr(layer, "lora_variant", {}):
        return None
    return active[0]


def _base_forward(base: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """The base layer's forward inside the block: plain linear, or with an update waiting,
    ``update + x W^T`` in one GEMM (then the bias)."""
    update = base.__dict__.pop("_lmlab_update", None)
    if update is None:
        return torch.nn.functional.linear(x, base.weight, base.bias)
    out = torch.addmm(update.reshape(-1, update.shape[-1]), x.reshape(-1, x.shape[-1]),
                      base.weight.t()).view(update.shape)
    return out if base.bias is None else out + base.bias


def _lora_forward(layer, peft_forward, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    adapter = None if args or kwargs or not cpu_bf16_autocast() else _adapter(layer)
    if adapter is None:
        return peft_forward(x, *args, **kwargs)
    lora_a = layer.lora_A[adapter]
    x_a = layer._cast_input_dtype(x, lora_a.weight.dtype)  # as peft does (off when shared)
    update = layer.lora_B[adapter](lora_a(layer.lora_dropout[adapter](x_a)))
    base = layer.base_layer
    base.__dict__["_lmlab_update"] = update * layer.scaling[adapter]
    try:
        return base(x)
    finally:
        base.__dict__.pop("_lmlab_update", None)


@contextlib.contextmanager
def lora_sums_in_matmul(model: torch.nn.Module, enabled: bool = True):
    """Inside the block, each peft LoRA layer over a plain ``nn.Linear`` adds its update in the
    base matmul's accumulator under CPU bf16 autocast (peft's forward otherwise). Yields the
    number of layers served."""
    layers = lora_layers(model) if enabled else []
    saved = [(m, m.__dict__.get("forward")) for layer in layers for m in (layer, layer.base_layer)]
    for layer in layers:
        layer.forward = functools.partial(_lora_forward, layer, layer.forward)
        layer.base_layer.forward = functools.partial(_base_forward, layer.base_layer)
    try:
        yield len(layers)
    finally:
        for m, forward in saved:  # the class's forward again (or what was set on the module)
            if forward is None:
                del m.forward
            else:
                m.forward = forward
