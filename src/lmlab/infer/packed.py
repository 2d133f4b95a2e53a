"""oneDNN-packed copies of a model's projection weights, for small-batch decoding on a CPU.

Why: on the 2-core AVX2 CPU the fp32 ``F.linear`` (MKL) of SmolLM2-135M's 211 projections
takes ~47 ms for one row but ~90 ms for 4 rows: small batches fall between the GEMV and the
GEMM kernels. The same products over weights reordered once into oneDNN's blocked layout take
~31 ms for one row, ~37 ms for 4 and ~57 ms for 16 (2 threads, 2026-11-23; see
benchmarks/RESULTS.md "Serving"). The results differ from ``F.linear`` only by fp32 rounding
(~1e-6 relative), not bit for bit; the packed copy costs one more copy of the weights in memory.

Only plain fp32 ``nn.Linear`` weights on the CPU are packed (quantized, half-precision or CUDA
weights keep ``F.linear``), and only where torch has oneDNN (``torch.backends.mkldnn``). The
packed copy is taken once: use it on frozen weights (serving), not in training.

``weights`` (``infer.precision``): the packed copies hold the weights rounded to that precision
(bf16, or int8 in blocks of 32, in fp32; an int8 copy's products also round their inputs per
block, ``precision.quantize_acts``), so this torch path computes what the C step computes from
its narrow copies, up to fp32 rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lmlab.infer.fastpath import A8, _mm, is_lora, plain_fp32_cpu
from lmlab.infer.precision import rounded, weights_of


# the row count oneDNN picks its blocked layout for; the layout serves any row count. Measured
# over SmolLM2-135M's projections (2 threads, ms for 1 / 4 / 16 rows): hint 1: 46 / 80 / 108,
# 4: 41 / 45 / 71, 16: 31 / 37 / 57, 64: 32 / 37 / 60 (F.linear: 47 / 90 / 106).
BATCH_HINT = 16


def can_pack(weight) -> bool:
    """A plain fp32 CPU tensor (no torchao subclass), with oneDNN in this torch build."""
    return torch.backends.mkldnn.is_available() and plain_fp32_cpu(weight) and weight.dim() == 2


class PackedLinears:
    """``lin(x, module)`` = ``F.linear(x, module.weight)``, through the packed copy when there
    is one. Modules are packed on first use and packed again when a weight changed in place
    (an optimizer step bumps the tensor's version), so a copy never goes stale. A peft LoRA layer
    (``fastpath.is_lora``) in eval mode runs one packed copy of W + scale * B @ A (folded once,
    refolded after the adapters change: one copy per update in RL, not a low-rank path per
    token); with its adapters disabled it runs the packed base weight. ``weights``: the
    precision the packed copies are rounded to (``infer.precision``; the C step reads the same
    precision)."""

    def __init__(self, enabled: bool = True, weights: str = "fp32"):
        self.enabled = enabled
        self.weights = weights_of(weights)
        self.packed: dict[torch.nn.Module, tuple] = {}  # module -> (packed weight, source key)

    @staticmethod
    def _key(parts) -> tuple:
        """What a packed copy was made from: each tensor's version and storage, other values
        (LoRA scales) as they are."""
        return tuple((t._version, t.data_ptr()) if torch.is_tensor(t) else t for t in parts)

    def _pack(self, key_of, parts, weight):
        """The packed copy stored under ``key_of``, packed again when ``parts`` changed."""
        key = self._key(parts)
        have = self.packed.get(key_of)
        if have is None or have[1] != key:
            packed = _reorder(rounded(weight(), self.weights))
            if self.weights == "int8":  # its products round their inputs (fastpath._mm)
                setattr(packed, A8, True)
            have = self.packed[key_of] = (packed, key)
        return have[0]

    def _weight(self, mod):
        """(what the weight is made from, a function giving the fp32 weight to pack) of a
        projection, or None when it cannot be packed. A LoRA layer in eval mode gives W + the sum
        of scale * B @ A over its active adapters (one addmm per adapter, no B @ A temporary);
        with its adapters disabled, its base weight."""
        if is_lora(mod):
            if mod.disable_adapters:
                return self._weight(mod.base_layer)
            base = mod.base_layer.weight
            names = [n for n in mod.active_adapters if n in mod.lora_A]
            if mod.training or not can_pack(base):
                return None
            parts = [base] + [t for n in names for t in (mod.lora_A[n].weight,
                                                          mod.lora_B[n].weight)]

            def fold():
                w = base
                for n in names:
                    w = torch.addmm(w, mod.lora_B[n].weight, mod.lora_A[n].weight,
                                    alpha=mod.scaling[n])
                return w
            return parts + [float(mod.scaling[n]) for n in names], fold
        w = getattr(mod, "weight", None)
        if not (type(mod) is torch.nn.Linear and mod.bias is None and can_pack(w)):
            return None
        return [w], lambda: w

    def weight_of(self, mod: torch.nn.Module) -> torch.Tensor | None:
        """The packed copy ``mod`` runs through (packed now when missing or stale), or None
        when it runs unpacked. A LoRA layer with its adapters disabled shares its base's copy."""
        if not self.enabled:
            return None
        if is_lora(mod) and mod.disable_adapters:
            mod = mod.base_layer
        src = self._weight(mod)
        return None if src is None else self._pack(mod, *src)

    def stacked_weight_of(self, mods: tuple) -> torch.Tensor | None:
        """One packed copy of the stacked weights of ``mods`` (projections sharing their input),
        or None when one of them cannot be packed."""
        if not self.enabled:
            return None
        srcs = [self._weight(m) for m in mods]
        if any(s is None for s in srcs):
            return None
        flags = tuple(bool(getattr(m, "disable_adapters", False)) for m in mods)
        return self._pack((mods, flags), [t for parts, _ in srcs for t in parts],
                          lambda: torch.cat([get() for _, get in srcs]))

    def __call__(self, x: torch.Tensor, mod: torch.nn.Module) -> torch.Tensor:
        w = self.weight_of(mod)
        return self.unpacked(x, mod) if w is None else _mm(x, w)

    def unpacked(self, x: torch.Tensor, mod: torch.nn.Module) -> torch.Tensor:
        """``mod`` on ``x`` without a packed copy of its own (its base's copy may serve)."""
        if is_lora(mod):
            out = self(x, mod.base_layer)
            if mod.disable_adapters:  # the reference: adapters off
                return out
            for name in mod.active_adapters:  # training mode: the base, then the low-rank path
                if name in mod.lora_A:
                    out = out + mod.lora_B[name](mod.lora_A[name](mod.lora_dropout[name](x))) \
                        * mod.scaling[name]
            return out
        # not packable; torch's dynamic int8 linear has no weight tensor: call the module
        return F.linear(x, mod.weight) if type(mod) is torch.nn.Linear else mod(x)

    def fused(self, x: torch.Tensor, mods: tuple) -> torch.Tensor | None:
        """``x`` through projections that share their input (q, k, v; gate, up) in one product
        over a packed copy of their stacked weights (fewer, larger calls: at a few rows the fixed
        cost per call weighs as much as the weights); the outputs side by side, or None when
        one of them cannot be packed (the caller then runs them one by one)."""
        w = self.stacked_weight_of(mods)
        return None if w is None else _mm(x, w)

    def pinned(self) -> "Pinned":
        """A view for one decode: see ``Pinned``."""
        return Pinned(self)

    def __deepcopy__(self, memo) -> "PackedLinears":
        # a copied model packs its own weights when used
        return PackedLinears(self.enabled, self.weights)

    def __getstate__(self) -> dict:  # oneDNN tensors do not pickle
        return {"enabled": self.enabled, "weights": self.weights, "packed": {}}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({"weights": "fp32", **state})

    @property
    def count(self) -> int:
        """Modules running through a packed copy (a stacked copy counts its modules)."""
        return sum(len(k[0]) if isinstance(k, tuple) else 1 for k in self.packed)


def _reorder(weight: torch.Tensor) -> torch.Tensor:
    """A oneDNN-packed copy of an fp32 weight (out, in), for ``fastpath._mm``."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), BATCH_HINT)


def linear_over(weight: torch.Tensor, pack: bool = True):
    """``x -> F.linear(x, weight)`` for a weight of one's own (not a module's), through a packed
    copy taken now when ``pack`` and the weight can be packed."""
    if pack and can_pack(weight):
        packed = _reorder(weight)
        return lambda x: _mm(x, packed)
    return lambda x: F.linear(x, weight)


class Pinned:
    """A ``PackedLinears`` as one decode sees it: each module's (or stacked group's) packed
    copy is looked up on its first call (packed or refolded then, if stale) and reused for the
    rest of the decode without checking the weights again. The check (peft attribute lookups,
    tensor versions) costs tens of microseconds of Python per call: about 9 ms of a 64 ms
    8-row SmolLM2 step with LoRA (cProfile, 2026-11-23). Valid while the weights do not change, which holds within one
    decode; a ``LlamaStep`` (one per decode) holds one."""

    def __init__(self, lin: PackedLinears):
        self.lin, self.memo = lin, {}

    def _memo(self, key, find):
        if key not in self.memo:
            self.memo[key] = find(key)
        return self.memo[key]

    def __call__(self, x: torch.Tensor, mod: torch.nn.Module) -> torch.Tensor:
        w = self._memo(mod, self.lin.weight_of)
        return self.lin.unpacked(x, mod) if w is None else _mm(x, w)

    def fused(self, x: torch.Tensor, mods: tuple) -> torch.Tensor | None:
        w = self._memo(mods, self.lin.stacked_weight_of)
        return None if w is None else _mm(x, w)

    def pinned_weight(self, mod) -> torch.Tensor | None:
        """The packed copy of a module, or of a tuple of modules stacked; None when unpacked."""
        find = self.lin.stacked_weight_of if isinstance(mod, tuple) else self.lin.weight_of
        return self._memo(mod, find)


def packed_linears(model, weights="fp32") -> PackedLinears:
    """The model's own ``PackedLinears`` at ``weights`` (a precision, or True for fp32), kept
    on it between calls (one packed copy per model; repacked only where weights changed, or
    all of it when another precision is asked for)."""
    weights = weights_of(weights) or "fp32"
    lin = getattr(model, "_lmlab_packed", None)
    if lin is None or lin.weights != weights:
        lin = PackedLinears(weights=weights)
        object.__setattr__(model, "_lmlab_packed", lin)
    return lin
