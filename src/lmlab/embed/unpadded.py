"""BERT without its padding: a BertModel's forward over only the real tokens of a batch.

A batch of short texts padded to its longest is mostly padding (ChatterBot pairs at batch 32:
21% of the padded positions are real tokens), and BERT's cost is in its per-token pieces
(embeddings, Q/K/V and output projections, the feed-forward, LayerNorms, dropout). Here those
run on the N real tokens packed as (N, H); only attention itself is padded, in groups of
GROUP texts sorted by length, each to its own longest (n, h, Tg, d), masked and packed again.
The batch, the weights (the transformers modules' own) and the outputs are those of
``BertModel.forward`` (up to float rounding; tests/embed/test_unpadded.py); only the wasted
work on padding goes. This is the "unpadding" of packed BERT/FlashAttention varlen kernels,
done with plain index_copy / index_select so it runs on any device and in autocast.

Legend: B texts, T the longest text, N real tokens, H hidden width, h heads, d = H / h,
n texts in an attention group and Tg its longest.
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


GROUP = 8  # texts per attention call: sorted by length, each group padded to its own longest


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
    plan = _plan(keep)
    grad_ckpt = _checkpointing(backbone) and torch.is_grad_enabled()
    for layer in backbone.encoder.layer:
        if grad_ckpt:
            h = checkpoint(_layer, layer, h, plan, use_reentrant=False)
        else:
            h = _layer(layer, h, plan)
    return h.new_zeros(b * t, h.shape[-1]).index_copy(0, flat, h).view(b, t, -1)


def _plan(keep: torch.Tensor) -> tuple[list, torch.Tensor]:
    """How attention visits the packed tokens, the same for every layer: the texts sorted by
    length in groups of GROUP, each group as (gather (n*Tg,) indices into the packed tokens,
    key mask (n, 1, 1, Tg) or None when no text in it is shorter, n, Tg, its real positions in
    n*Tg), and the permutation that puts the groups' outputs back in packed order. Grouping by
    length cuts the padded T x T attention work (with dropout on, the CPU runs attention on its
    math path over every padded score) to about each group's own longest."""
    lengths = keep.sum(dim=1)  # (B,)
    starts = torch.cumsum(lengths, 0) - lengths  # each text's first packed token
    order = torch.argsort(lengths, descending=True, stable=True).tolist()
    groups, targets = [], []
    for i in range(0, len(order), GROUP):
        rows = torch.tensor(order[i:i + GROUP], device=keep.device)
        n, tg = len(rows), int(lengths[rows[0]])
        cols = torch.arange(tg, device=keep.device)
        valid = cols[None] < lengths[rows][:, None]  # (n, Tg)
        idx = torch.where(valid, starts[rows][:, None] + cols[None], 0).reshape(-1)
        real = valid.reshape(-1).nonzero().squeeze(1)
        mask = None if bool(valid.all()) else valid[:, None, None, :]
        groups.append((idx, mask, n, tg, real))
        targets.append(idx[real])
    order_out = torch.cat(targets)  # packed position of each row of the groups' outputs
    back = torch.empty_like(order_out).scatter_(
        0, order_out, torch.arange(len(order_out), device=keep.device))
    return groups, back


def _checkpointing(backbone) -> bool:
    """Whether transformers' activation checkpointing is on (``lmlab ... activation_checkpointing
    =true``): then each layer recomputes its activations in backward here too."""
    flag = getattr(backbone, "is_activation_checkpointing", None)
    if flag is None:  # transformers < 5 names it is_gradient_checkpointing
        flag = getattr(backbone, "is_gradient_checkpointing", False)
    return bool(flag)


def _layer(layer, h: torch.Tensor, plan) -> torch.Tensor:
    """One BertLayer on packed tokens (N, H) -> (N, H)."""
    att = layer.attention.self
    ctx = _attend(att, att.query(h), att.key(h), att.value(h), plan)  # (N, H)
    a = layer.attention.output(ctx, h)  # dense, dropout, LayerNorm(x + h)
    return layer.output(layer.intermediate(a), a)


def _attend(att, q, k, v, plan) -> torch.Tensor:
    """Masked multi-head attention of packed q, k, v (N, H), group by group padded to
    (n, h, Tg, d) for ``scaled_dot_product_attention``, packed back to (N, H)."""
    groups, back = plan
    heads, d = att.num_attention_heads, att.attention_head_size
    p = att.dropout.p if att.training else 0.0
    qkv = torch.stack([q, k, v])  # (3, N, H)
    outs = []
    for idx, mask, n, tg, real in groups:
        gq, gk, gv = qkv.index_select(1, idx).view(3, n, tg, heads, d).transpose(2, 3).unbind(0)
        out = F.scaled_dot_product_attention(gq, gk, gv, attn_mask=mask, dropout_p=p,
                                             scale=att.scaling)  # (n, h, Tg, d)
        outs.append(out.transpose(1, 2).reshape(n * tg, -1).index_select(0, real))
    return torch.cat(outs).index_select(0, back)  # (N, H)
