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
