"""``compile=true`` for training: compile the whole model, or its repeated blocks.

``scope="model"`` compiles the whole forward (fuses across blocks; dynamo traces every
block). ``scope="blocks"`` (regional compilation) compiles each block of the model's largest
list of identical blocks (a decoder's layers) with ``Module.compile()``; torch traces the first
block and reuses its code for the others (since torch 2.5 parameters are graph inputs, not
constants); the embedding, final norm and head stay eager. Both keep the module tree and
``state_dict`` keys unchanged (``Module.compile`` compiles in place), so checkpoints, resume
and ``final/`` are the same as uncompiled; ``eager(model)`` switches every compiled module off
for a block.

Measured at the nano preset (4 layers, 128 wide, batch 12 x 64) on one thread of the 2-core
AMX Xeon under load (CPU time; ratios against eager fp32 interleaved in one process): the Llama
body compiled whole ran 1.44x (fp32) and 1.82x (bf16 autocast: the casts fuse into the
elementwise kernels around each matmul), per block 1.38x and 1.70x. A cold compile (empty
inductor cache) of the bf16 step took 47 s of CPU whole (12 s tracing in the process, 35 s in
the compile workers) and 36 s per block (5 + 30). The GPT-2 body has little to fuse (LayerNorm
and GELU are one kernel each): bf16 compiled whole 1.56x, per block 0.91x. Hence ``model`` is
the default; ``blocks`` trades slower steps for less tracing.

Fine-tuning (sft, dpo, reward) feeds batches padded to their longest row, so shapes vary.
Counted with ``TORCH_LOGS=recompiles`` on tiny:llama LoRA, fp32 and bf16 autocast alike: the
first step compiles static shapes, then one recompile when the number of trained positions
(``logits_to_keep``) changes and one when the sequence length does, each marking that size
dynamic (dynamo's automatic dynamic shapes); no more after that: 3 graphs in 60 sft steps
(``data=task:all``, batch 4), 3 in 60 dpo steps, 2 for reward (no ``logits_to_keep``). Padding
each batch to a multiple of 64 would save none of them (the trained positions vary anyway) at
up to 63 pad tokens a row, so the collators are left alone. Forwards without gradients (DPO's
LoRA reference, KTO's twins) run under ``eager``: compiled, they doubled the graphs (dynamo
keys on grad mode). DoRA came apart into 35 graphs (41 under bf16 autocast) on tiny:llama,
one break in each DoRA layer's forward, until ``traceable_peft``; now one graph, as LoRA.
"""

from __future__ import annotations

import contextlib
import functools
import sys

import torch

SCOPES = ("model", "blocks")  # compile_scope's choices (lmlab.train.config.CompileOptions)


def repeated_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The longest ``ModuleList`` whose members all have one class (a decoder's layers);
    empty if the model has none with two or more members."""
    best: list[torch.nn.Module] = []
    for m in model.modules():
        if isinstance(m, torch.nn.ModuleList) and len(m) > max(1, len(best)) \
                and len({type(c) for c in m}) == 1:
            best = list(m)
    return best


def compile_model(model: torch.nn.Module, scope: str = "model") -> str:
    """Compile ``model`` in place for training; returns a short description for the log.
    A model without repeated blocks is compiled whole."""
    if scope not in SCOPES:
        raise ValueError(f"compile scope {scope!r} is not one of {SCOPES}")
    if "peft" in sys.modules:  # the model may hold peft's layers
        traceable_peft()
    blocks = repeated_blocks(model) if scope == "blocks" else []
    if not blocks:
        model.compile()
        return "the whole model"
    for b in blocks:
        b.compile()
    return f"{len(blocks)} {type(blocks[0]).__name__} blocks (compiled once, reused)"


@functools.cache
def traceable_peft() -> None:
    """Let dynamo trace peft's DoRA layers (once per process). Their forward reads the base
    weight through ``peft.utils.integrations.dequantize_module_weight``, which asks
    ``type(module.weight).__module__.startswith("torchao.")``: dynamo models the class
    ``nn.Parameter`` as a torch function, so its ``__module__`` is no constant string and
    ``startswith`` breaks the graph, once in every DoRA layer's forward. While tracing, and
    only then, dynamo now calls ``traced`` instead (``torch.compiler.substitute_in_graph``;
    eager code still calls peft's): a plain ``nn.Parameter`` weight on a module that is not
    HQQ's is returned as it is, which is what peft returns for it; any other weight
    (quantized, a tensor subclass) goes to peft's own function, run eagerly, a graph break
    as before. torch before 2.5 has no ``substitute_in_graph``: DoRA breaks there as it did."""
    from peft.utils.integrations import dequantize_module_weight

    if not hasattr(torch.compiler, "substitute_in_graph"):
        return
    peft_eager = torch.compiler.disable(dequantize_module_weight)

    @torch.compiler.substitute_in_graph(dequantize_module_weight)
    def traced(module):
        weight = module.weight
        if type(weight) is torch.nn.Parameter and not hasattr(module, "W_q"):
            return weight
        return peft_eager(module)


def compiled_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules of ``model`` (itself included) that ``Module.compile()`` switched on."""
    return [m for m in model.modules() if getattr(m, "_compiled_call_impl", None) is not None]


def _switch(modules: list[torch.nn.Module], impls: list) -> list:
    """Give each module its compiled call (``Module.compile()`` keeps it in the private
    ``_compiled_call_impl``; None runs the module eagerly); returns the ones it replaced, so
    that a second call puts them back."""
    old = [m._compiled_call_impl for m in modules]
    for m, impl in zip(modules, impls, strict=True):
        m._compiled_call_impl = impl
    return old


@contextlib.contextmanager
def eager(model: torch.nn.Module):
    """Every compiled module of ``model`` runs uncompiled inside the block (evals and sampling
    vary the shapes; compiling each would take longer than running them eagerly)."""
    modules = compiled_modules(model)
    saved = _switch(modules, [None] * len(modules))
    try:
        yield model
    finally:
        _switch(modules, saved)


@contextlib.contextmanager
def compiled_for_training(model: torch.nn.Module, options):
    """``options.compile`` (a stage's ``CompileOptions``): compile ``model`` in place for the
    block, which wraps the stage's ``train(...)`` call, and say so; after it every compiled
    module is switched off for good, so the evals, samples and save that follow run eagerly
    (the loop's own evals run under ``eager``). Nothing is traced until the first step, so the
    loop's CPU-autocast wrappers set up inside ``train`` (LoRA's fused sum) are what is traced.
    Without ``options.compile`` the block runs the model as it is."""
    if not options.compile:
        yield model
        return
    from lmlab.common import print0

    print0(f"[lmlab] compile: {compile_model(model, options.compile_scope)}; the first step "
           f"compiles")
    try:
        yield model
    finally:
        modules = compiled_modules(model)
        _switch(modules, [None] * len(modules))
