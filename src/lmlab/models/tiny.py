"""Tiny random-weight models for tests: `tiny:<preset>` model references.

They use the real SmolLM2 tokenizer (so chat templates and masks are the real ones) with a
2-layer, width-64 llama body; weights are seeded, so every call builds the same model.
"""

from __future__ import annotations

import torch

from lmlab.errors import ModelRefError

PRESETS: dict[str, dict] = {
    # name: LlamaConfig overrides
    "llama": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2),
    "llama4": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                   num_attention_heads=4, num_key_value_heads=2),
    "llama-wide": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4),
}


def tiny_config(preset: str, tokenizer):
    from transformers import LlamaConfig

    if preset not in PRESETS:
        raise ModelRefError(f"unknown tiny preset '{preset}'; known: {', '.join(sorted(PRESETS))}")
    return LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **PRESETS[preset],
    )


def build_tiny(preset: str, tokenizer, seed: int = 0):
    """A seeded random llama; the global RNG is left as it was."""
    from transformers import LlamaForCausalLM

    config = tiny_config(preset, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model
