"""Frozen linear weights held as bf16 copies for the forward/backward of each CPU autocast step.

Under ``torch.autocast("cpu", bfloat16)`` a matmul casts its fp32 weight to bf16 on every call;
the autocast cache keeps the cast only for leaf tensors that require grad, so the frozen base
weights of LoRA (and of the other parameter-efficient methods) are cast again at every forward
of every step. ``FrozenBf16`` makes each eligible weight's bf16 copy once (``Tensor.to``, the
same round-to-nearest-even cast autocast makes, so the numbers are identical) and, inside
``swapped()``, points the parameter's ``.data`` at it; on leaving, back at the fp32 tensor
(pointer swaps, no copies): evals, checkpoints and final/ only ever see fp32.

Eligible: the ``weight`` of a plain ``nn.Linear`` (exact type: quantized subclasses are left alone)
that is frozen, fp32, a plain tensor (no DTensor), held by no other module (SmolLM2 ties ``lm_head``
to ``embed_tokens``: an embedding lookup on a bf16 table would change the numbers) and is not the
base layer of a DoRA layer (its weight norm reads the base weight outside a matmul). A frozen output
head tied to input embeddings (SmolLM2's lm_head = embed_tokens, 49152 x 576, cast at every step
under LoRA) gets its copy another way: inside ``swapped()`` the head module's ``weight`` entry is a
separate bf16 parameter, the embeddings keep the fp32 one (a lookup in a bf16 table would change the
numbers; the head's matmul reads the same bf16 values autocast's cast gives). A weight changed in
place between steps (``load_state_dict``, a merge) gets a fresh copy at the next swap (its version
counter or storage moved); in SFT/DPO nothing writes a frozen weight, so the copies are made once
per run.
"""

from __future__ import annotations

import contextlib

import torch


def _dora_bases(model: torch.nn.Module) -> set[int]:
    """ids of the base layers of peft LoRA layers with DoRA on for any adapter."""
    out = set()
    for m in model.modules():
        dora = getattr(m, "use_dora", None)
        base = getattr(m, "base_layer", None)
        if isinstance(dora, dict) and any(dora.values()) and base is not None:
            out.add(id(base))
    return out


def _holders(model: torch.nn.Module) -> tuple[dict[int, list[torch.nn.Module]],
                                               dict[int, torch.nn.Parameter]]:
    """For each parameter (by id): the modules that hold it directly, and the parameter."""
    holders: dict[int, list[torch.nn.Module]] = {}
    params: dict[int, torch.nn.Parameter] = {}
    for m in model.modules():
        for p in m.parameters(recurse=False):
            holders.setdefault(id(p), []).append(m)
            params[id(p)] = p
    return holders, params


def _frozen_fp32(p: torch.nn.Parameter) -> bool:
    """Not trained and still fp32: a weight whose bf16 copy stays valid."""
    return not p.requires_grad and p.dtype == torch.float32


def _copyable(p: torch.nn.Parameter) -> bool:
    """Frozen, fp32 and a plain tensor (no DTensor)."""
    return _frozen_fp32(p) and type(p.data) is torch.Tensor


def eligible(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The frozen fp32 nn.Linear weights whose only use is that Linear's matmul."""
    holders, params = _holders(model)
    dora = _dora_bases(model)
    out = []
    for key, mods in holders.items():
        p = params[key]
        if (len(mods) == 1 and type(mods[0]) is torch.nn.Linear and mods[0].weight is p
                and id(mods[0]) not in dora and _copyable(p)):
            out.append(p)
    return out


def tied_heads(model: torch.nn.Module) -> list[tuple[torch.nn.Linear, torch.nn.Parameter]]:
    """(head, weight) for frozen fp32 weights used by one plain nn.Linear and otherwise only as
    the weight of nn.Embedding lookups (a tied output head)."""
    holders, params = _holders(model)
    out = []
    for key, mods in holders.items():
        p = params[key]
        heads = [m for m in mods if type(m) is torch.nn.Linear]
        rest = [m for m in mods if type(m) is not torch.nn.Linear]
        if (len(mods) > 1 and len(heads) == 1 and heads[0].weight is p
                and all(isinstance(m, torch.nn.Embedding) and m.weight is p for m in rest)
                and _copyable(p)):
            out.append((heads[0], p))
    return out


class FrozenBf16:
    """bf16 copies of a model's eligible frozen linear weights, swapped in per step."""

    def __init__(self, model: torch.nn.Module, cast=None):
        self.params = eligible(model)
        self.heads = tied_heads(model)
        # the cast: Tensor.to (round to nearest even, as autocast); a test passes another
        self.cast = cast or (lambda t: t.to(torch.bfloat16))
        self.copies: dict[int, tuple[tuple, torch.Tensor]] = {}
        self.made = 0  # copies made (once per weight unless it changed)

    def _copy(self, p: torch.nn.Parameter) -> torch.Tensor:
        key = (p._version, p.data_ptr(), p.dtype, tuple(p.shape))
        held = self.copies.get(id(p))
        if held is None or held[0] != key:
            held = (key, self.cast(p.data).detach())
            self.copies[id(p)] = held
            self.made += 1
        return held[1]

    @contextlib.contextmanager
    def swapped(self):
        """Inside: each eligible weight's ``.data`` is its bf16 copy; fp32 again on exit."""
        fp32, heads = [], []
        try:
            for p in self.params:
                if not _frozen_fp32(p):
                    continue  # unfrozen (or cast) since the model was read: left alone
                low = self._copy(p)
                fp32.append((p, p.data))
                p.data = low
            for head, p in self.heads:
                if not _frozen_fp32(p) or head.weight is not p:
                    continue
                low = torch.nn.Parameter(self._copy(p), requires_grad=False)
                heads.append((head, p))
                head._parameters["weight"] = low
            yield
        finally:
            for p, w in fp32:
                p.data = w
            for head, p in heads:
                head._parameters["weight"] = p
