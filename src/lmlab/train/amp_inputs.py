"""Each fp32 activation cast to bf16 once for all the linear layers that read it, under CPU
autocast, with the numbers of plain autocast.

Under ``torch.autocast("cpu", bfloat16)`` every ``linear`` casts its fp32 input to bf16, and
autocast caches only casts of leaf tensors: in a Llama block q_proj, k_proj and v_proj each
cast the same normed hidden states, gate_proj and up_proj too, and with LoRA each adapter's
``lora_A`` casts that input once more (6 casts of one tensor before attention, 4 before the
MLP). ``SharedInputCasts`` makes that cast once (a forward pre-hook on each plain
``nn.Linear``, a two-entry cache keyed by the tensor itself and its version) and hands each
layer the same bf16 tensor through its own autograd node, whose backward is the one autocast's
cast has (the bf16 gradient converted to fp32, exact). Every consumer keeps its own node, so the
gradients still meet in fp32 and in the same order: forward values, gradients and their sums are
those of plain autocast, to the bit.

peft's LoRA layers convert their input to the adapter's dtype before ``lora_A``
(``_cast_input_dtype``): on down_proj, whose input is bf16 under autocast (o_proj's too where
attention runs in bf16), that is a cast up to fp32 that autocast casts straight back down (and two
casts of the gradient in the backward), all exact. Inside ``active()`` it is turned off for layers
whose dropout is the identity and that have no variant (DoRA): their ``lora_A`` reads the bf16 input
as it is. A layer with dropout keeps it (dropout in fp32 then rounded is not dropout in bf16).
"""

from __future__ import annotations

import contextlib

import torch

from lmlab.models.amp_adapters import cpu_bf16_autocast

BF16 = torch.bfloat16


class _Shared(torch.autograd.Function):
    """x (fp32) -> the bf16 cast made earlier; backward: the gradient in fp32, as autocast's
    cast (``_to_copy``'s backward) gives it."""

    @staticmethod
    def forward(ctx, x, low):
        return low.detach()  # a new tensor on the same storage: one autograd node per consumer

    @staticmethod
    def backward(ctx, grad):
        return grad.to(torch.float32), None


def peft_casts_to_skip(model: torch.nn.Module) -> list[torch.nn.Module]:
    """peft LoRA layers whose input cast before ``lora_A`` can be skipped under autocast: every
    adapter's dropout is the identity, no variant (DoRA), casting on."""
    out = []
    for m in model.modules():
        drops, variants = getattr(m, "lora_dropout", None), getattr(m, "lora_variant", None)
        if not isinstance(drops, torch.nn.ModuleDict) or not hasattr(m, "lora_A") \
                or not getattr(m, "cast_input_dtype_enabled", False) or variants:
            continue
        if all(type(d) is torch.nn.Identity for d in drops.values()):
            out.append(m)
    return out


class SharedInputCasts:
    """Inside ``active()``: plain linear layers share the bf16 cast of an fp32 input (under
    CPU bf16 autocast only), and peft's redundant LoRA input casts are off."""

    def __init__(self, model: torch.nn.Module, cast=None):
        # the cast: Tensor.to (round to nearest even, as autocast); a test passes another
        self.cast = cast or (lambda t: t.to(BF16))
        self.linears = [m for m in model.modules() if type(m) is torch.nn.Linear]
        self.peft = peft_casts_to_skip(model)
        self.cache: list[tuple[torch.Tensor, int, torch.Tensor]] = []  # newest last
        self.made = self.shared = 0  # casts made, casts saved (for tests and profiles)
        self.steps = 0

    def _low(self, x: torch.Tensor) -> torch.Tensor:
        for i, (t, version, low) in enumerate(self.cache):
            if t is x and version == x._version:
                self.cache.append(self.cache.pop(i))
                self.shared += 1
                return low
        low = self.cast(x.detach())
        self.cache = [*self.cache[-1:], (x, x._version, low)]  # two entries: x and dropout(x)
        self.made += 1
        return low

    def _hook(self, module, args):
        if not args or not cpu_bf16_autocast():
            return None
        x = args[0]
        if type(x) is not torch.Tensor or x.dtype != torch.float32 or x.device.type != "cpu":
            return None
        low = self._low(x)
        if x.requires_grad and torch.is_grad_enabled():
            low = _Shared.apply(x, low)
        return (low, *args[1:])

    @contextlib.contextmanager
    def active(self):
        # a model whose first step shared no cast (one reader per activation, e.g. a fused qkv
        # projection) gets no hooks after it: they would only add their own overhead
        hooks = self.linears if self.steps == 0 or self.shared else []
        self.steps += 1
        handles = [m.register_forward_pre_hook(self._hook) for m in hooks]
        for m in self.peft:
            m.cast_input_dtype_enabled = False
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            for m in self.peft:
                m.cast_input_dtype_enabled = True
            self.cache = []  # no activation outlives the step
