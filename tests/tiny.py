"""Tiny models for tests that need them to say something (shared by infer, serve, models)."""

import torch

from lmlab.models import load_model


def varied(preset: str = "llama", std: float = 0.5, seed: int = 0):
    """A tiny model whose greedy output is not one repeated token: the default init (std 0.02)
    leaves the tied embedding dominating the logits, so every test would pass trivially.
    Larger random matrices give peaked, varied next-token distributions."""
    m = load_model(f"tiny:{preset}")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return m.eval()


def odd_llama(vocab: int, inter: int, *, hidden: int = 60, positions: int = 128, seed: int = 3):
    """A 2-layer Llama (3 query heads, 1 key/value head, untied head) whose widths are no
    multiples of 8 and whose row counts need not divide by the threads: the native step's
    scalar tails, fallbacks and thread splits. Matrices ~ N(0, 0.5) so the logits vary."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter,
                      num_hidden_layers=2, num_attention_heads=3, num_key_value_heads=1,
                      max_position_embeddings=positions, tie_word_embeddings=False)
    m = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for prm in m.parameters():
            if prm.dim() == 2:
                prm.normal_(0, 0.5)
    return m
