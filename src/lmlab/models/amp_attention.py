"""Attention in fp32 inside CPU bf16 autocast: a registered transformers attention function.

Under ``torch.autocast("cpu", bfloat16)`` the q/k/v projections come out in bf16 and SDPA runs
its bf16 CPU kernel, which at the head sizes of the scratch presets is the slow one: forward +
backward of causal SDPA on (12, 4, 64, 32) took 4.4x longer in bf16 than in fp32 (torch 2.13,
Intel AMX Xeon, one thread), enough to make bf16 autocast slower than fp32 at nanoGPT's char
model (bench_pretrain, session 16: 0.76x). Casting q/k/v up for the attention alone keeps the
bf16 matmuls (AMX) and the fast fp32 attention kernel; its outputs are also more accurate.

The training loop (``train.loop.cpu_amp_attention``) applies it to every stage it runs under
CPU bf16 autocast: at SmolLM2-135M's shapes (head size 64) bf16 SDPA forward + backward took
2-2.6x the fp32 time alone, one thread (docs/hardware.md). ``pretrain`` also wraps its evals in it.

The model stays a stock transformers class: ``fp32_attention(model)`` only points its config
at the registered name for the block and puts ``sdpa`` back after (before ``save_pretrained``,
so ``final/config.json`` is unchanged).
"""

from __future__ import annotations

import contextlib

import torch

NAME = "lmlab_sdpa_fp32"
_registered = False


def _attention(module, query, key, value, attention_mask, **kwargs):
    """transformers' SDPA attention on fp32 copies of q/k/v (and a float mask), autocast off
    inside; the output in the query's dtype. (B, H, T, D) in, (B, T, H, D) out."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    dtype = query.dtype
    if attention_mask is not None and attention_mask.is_floating_point():
        attention_mask = attention_mask.float()
    with torch.autocast(query.device.type, enabled=False):
        out, weights = sdpa_attention_forward(module, query.float(), key.float(), value.float(),
                                              attention_mask, **kwargs)
    return out.to(dtype), weights


def register() -> str:
    """Register the attention function and SDPA's mask builder under ``NAME`` (once)."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

        AttentionInterface.register(NAME, _attention)
        AttentionMaskInterface.register(NAME, sdpa_mask)
        _registered = True
    return NAME


@contextlib.contextmanager
def fp32_attention(model, enabled: bool = True):
    """Inside the block, a transformers model that uses ``sdpa`` attends in fp32; models with
    another attention (or no transformers config, e.g. the ELECTRA pair) are left alone."""
    config = getattr(model, "config", None)
    if not enabled or getattr(config, "_attn_implementation", None) != "sdpa":
        yield model
        return
    config._attn_implementation = register()
    try:
        yield model
    finally:
        config._attn_implementation = "sdpa"
