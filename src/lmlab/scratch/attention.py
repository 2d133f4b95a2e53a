"""Multi-head causal self-attention with rotary position embeddings (RoPE), from scratch.

The twin of transformers' ``LlamaAttention`` (tests/scratch/test_attention.py copies a tiny
Llama layer's weights into it and compares outputs). Shapes: B batch, T tokens, D model width,
H query heads, K key/value heads (K divides H; K < H is grouped-query attention, GQA), d = D / H
the head width.

    x (B, T, D) -> q (B, H, T, d), k and v (B, K, T, d)
    rotate q and k by their positions (RoPE)
    repeat each k, v head H / K times       -> (B, H, T, d)
    scores = q k^T / sqrt(d)               -> (B, H, T, T), future positions set to -inf
    out = softmax(scores) v                 -> (B, H, T, d) -> (B, T, H * d) -> o_proj -> (B, T, D)

RoPE (Su et al. 2021, "RoFormer"): each pair of features (i, i + d/2) of a query or key at
position p is turned by the angle p * theta^(-2i/d). A query at p and a key at s then meet in
the dot product only through p - s, so attention sees relative positions, with no learned
position table. Llama pairs feature i with i + d/2 ("rotate half"), not neighbours (2i, 2i+1)
as the paper writes it: the same rotation on permuted features, so weights are not
interchangeable between the two conventions.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def rope_angles(positions: torch.Tensor, head_dim: int, theta: float = 10000.0,
                dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angles, each (T, d): angle p * theta^(-2i/d) for i < d/2,
    repeated for the second half (the partner features)."""
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]  # (T, d/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, d)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) over the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (B, heads, T, d) by the angles whose cos and sin are (T, d)."""
    return x * cos + rotate_half(x) * sin


def causal_mask(t: int, device=None) -> torch.Tensor:
    """(T, T) booleans: True where query i may look at key j (j <= i)."""
    return torch.ones(t, t, dtype=torch.bool, device=device).tril()


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
           mask: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d), masked) v, written out: q (B, H, T, d), k and v (B, H, S, d),
    mask (T, S) or broadcastable -> (B, H, T, d)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, T, S)
    scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1) @ v


class Attention(nn.Module):
    """Causal multi-head (or grouped-query) self-attention with RoPE. Its parameter names
    (``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``) are Llama's, so
    ``load_state_dict(llama_layer.self_attn.state_dict())`` copies a Llama layer in."""

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int | None = None,
                 head_dim: int | None = None, rope_theta: float = 10000.0, bias: bool = False,
                 causal: bool = True):
        super().__init__()
        self.n_heads = n_heads
        self.causal = causal  # False: every token sees every token (a ViT's encoder)
        self.n_kv_heads = n_kv_heads or n_heads
        if n_heads % self.n_kv_heads:
            raise ValueError(f"n_kv_heads ({self.n_kv_heads}) must divide n_heads ({n_heads})")
        self.head_dim = head_dim or dim // n_heads
        self.rope_theta = rope_theta
        self.q_proj = nn.Linear(dim, n_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(dim, self.n_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(dim, self.n_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(n_heads * self.head_dim, dim, bias=bias)

    def _heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, n, self.head_dim).transpose(1, 2)  # (B, n, T, d)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, D); positions (T,) default 0..T-1 -> (B, T, D)."""
        b, t, _ = x.shape
        if positions is None:
            positions = torch.arange(t, device=x.device)
        q = self._heads(self.q_proj(x), self.n_heads)
        k = self._heads(self.k_proj(x), self.n_kv_heads)
        v = self._heads(self.v_proj(x), self.n_kv_heads)
        cos, sin = rope_angles(positions, self.head_dim, self.rope_theta, x.dtype)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        group = self.n_heads // self.n_kv_heads  # GQA: each k/v head serves `group` q heads
        k = k.repeat_interleave(group, dim=1)  # (B, H, T, d)
        v = v.repeat_interleave(group, dim=1)
        mask = causal_mask(t, x.device) if self.causal else torch.ones(
            t, t, dtype=torch.bool, device=x.device)
        out = attend(q, k, v, mask)  # (B, H, T, d)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))


def from_llama_config(config) -> Attention:
    """An ``Attention`` shaped like one layer of a transformers ``LlamaConfig``."""
    theta = (getattr(config, "rope_parameters", None) or {}).get("rope_theta") \
        or getattr(config, "rope_theta", 10000.0)
    return Attention(config.hidden_size, config.num_attention_heads,
                     config.num_key_value_heads, getattr(config, "head_dim", None), theta,
                     config.attention_bias)
