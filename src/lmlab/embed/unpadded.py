"""BERT without its padding: a BertModel's forward over only the real tokens of a batch.

A batch of short texts padded to its longest is mostly padding (ChatterBot pairs at batch 32:
21% of the padded positions are real tokens), and BERT's cost is in its per-token pieces
(embeddings, Q/K/V and output projections, the feed-forward, LayerNorms, dropout). Here those
run on the N real tokens packed as (N, H); only attention itself is padded back to
(B, h, T, d), masked and packed again (at T of a few dozen tokens it is a small share of the
FLOPs). The batch, the weights (the transformers modules' own) and the outputs are those of
``BertModel.forward`` (up to float rounding; tests/embed/test_unpadded.py); only the wasted
work on padding goes. This is the "unpadding" of packed BERT/FlashAttention varlen kernels,
done with plain index_copy / index_select so it runs on any device and in autocast.

Legend: B texts, T the longest text, N real tokens, H hidden width, h heads, d = H / h.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def supports(backbone) -> bool:
    """True for a plain bidirectional transformers ``BertModel`` with absolute positions (the
    MiniLM/BERT family); anything else keeps its own forward."""
    cfg = getattr(backbone, "config", None)
    return (type(backbone).__name__ == "BertModel" and cfg is not None
            and cfg.model_type == "bert" and not cfg.is_decoder
            and getattr(cfg, "position_embedding_type", "absolute") == "absolute")


def forward(backbone, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H) last hidden states of ``backbone`` (a BertModel) for a padded batch, computed
    on the real tokens only; padded positions hold zeros (pooling never reads them)."""
    b, t = input_ids.shape
    keep = attention_mask.bool()  # (B, T)
    flat = keep.reshape(-1).nonzero().squeeze(1)  # (N,) positions of real tokens in B*T
    # BERT numbers positions by column (0..T-1 in every row), whatever the mask says
    pos = torch.arange(t, device=input_ids.device).expand(b, t).reshape(-1)[flat]
    h = backbone.embeddings(input_ids=input_ids.reshape(-1)[flat][None],
                            position_ids=pos[None])[0]  # (N, H)
    key_mask = keep[:, None, None, :]  # (B, 1, 1, T): every query sees the real keys
    grad_ckpt = _checkpointing(backbone) and torch.is_grad_enabled()
    for layer in backbone.encoder.layer:
        if grad_ckpt:
            h = checkpoint(_layer, layer, h, flat, key_mask, use_reentrant=False)
        else:
            h = _layer(layer, h, flat, key_mask)
    return h.new_zeros(b * t, h.shape[-1]).index_copy(0, flat, h).view(b, t, -1)


def _checkpointing(backbone) -> bool:
    """Whether transformers' activation checkpointing is on (``lmlab ... activation_checkpointing
    =true``): then each layer recomputes its activations in backward here too."""
    flag = getattr(backbone, "is_activation_checkpointing", None)
    if flag is None:  # transformers < 5 names it is_gradient_checkpointing
        flag = getattr(backbone, "is_gradient_checkpointing", False)
    return bool(flag)


def _layer(layer, h: torch.Tensor, flat: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """One BertLayer on packed tokens (N, H) -> (N, H)."""
    att = layer.attention.self
    ctx = _attend(att, att.query(h), att.key(h), att.value(h), flat, key_mask)  # (N, H)
    a = layer.attention.output(ctx, h)  # dense, dropout, LayerNorm(x + h)
    return layer.output(layer.intermediate(a), a)


def _attend(att, q, k, v, flat: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """Masked multi-head attention of packed q, k, v (N, H), padded to (B, h, T, d) for
    ``scaled_dot_product_attention`` and packed back to (N, H)."""
    b, t = key_mask.shape[0], key_mask.shape[-1]
    heads, d = att.num_attention_heads, att.attention_head_size
    qkv = torch.stack([q, k, v])  # (3, N, H)
    padded = qkv.new_zeros(3, b * t, qkv.shape[-1]).index_copy(1, flat, qkv)
    q, k, v = padded.view(3, b, t, heads, d).transpose(2, 3).unbind(0)  # (B, h, T, d) each
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=key_mask, dropout_p=att.dropout.p if att.training else 0.0,
        scale=att.scaling)  # (B, h, T, d)
    return out.transpose(1, 2).reshape(b * t, -1).index_select(0, flat)  # (N, H)
