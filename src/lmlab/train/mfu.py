"""Model FLOPs utilisation: the FLOPs the model needs per token x tokens/s, over the device's
matmul rate (the hardware probe's best, for the dtype the matmuls run in).

Counting (PaLM, appendix B; lmlab.plan uses the same): a forward pass costs 2 FLOPs per weight
a token meets; backward costs 2 more for the input gradients and 2 for each trainable weight's
gradient. Full training: 6 N; LoRA (frozen base): about 4 N. Attention adds 12 L d s per token
(QK^T and AV, 2 L d s each forward, times 3). N counts the weights in matmuls: an untied input
embedding is a lookup and is left out; a tied one counts once, as the LM head.
Model FLOPs are the formula's, whatever the code skips (the LM objectives run the head only at
trained positions), so MFU compares runs, libraries and machines on one scale.
"""

from __future__ import annotations

import torch


def train_flops_per_token(params: int, trainable: int, layers: int, hidden: int,
                          seq_len: float) -> float:
    """FLOPs per trained token: 4 N (forward + input gradients) + 2 N_trainable (weight
    gradients) + 12 L d s (attention scores and mixing, forward and backward)."""
    return 4.0 * params + 2.0 * trainable + 12.0 * layers * hidden * seq_len


def matmul_params(model: torch.nn.Module) -> tuple[int, int]:
    """(weights in matmuls, trainable ones): every parameter but an untied input embedding."""
    skip = None
    get_in = getattr(model, "get_input_embeddings", None)
    get_out = getattr(model, "get_output_embeddings", None)
    emb = get_in() if callable(get_in) else None
    head = get_out() if callable(get_out) else None
    if emb is not None and getattr(emb, "weight", None) is not None:
        tied = head is not None and getattr(head, "weight", None) is emb.weight
        skip = None if tied else emb.weight
    total = trainable = 0
    for p in model.parameters():
        if p is skip:
            continue
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return total, trainable


def shape_of(model: torch.nn.Module) -> tuple[int, int]:
    """(layers, hidden) from a transformers config; (0, 0) when the model has none (no
    attention term)."""
    cfg = getattr(model, "config", None)
    layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None)
    hidden = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", None)
    if isinstance(layers, int) and isinstance(hidden, int):
        return layers, hidden
    return 0, 0


class FlopCounter:
    """A model's training FLOPs per token at a sequence length (counted once, at the start)."""

    def __init__(self, model: torch.nn.Module):
        self.params, self.trainable = matmul_params(model)
        self.layers, self.hidden = shape_of(model)

    def per_token(self, seq_len: float) -> float:
        return train_flops_per_token(self.params, self.trainable, self.layers, self.hidden,
                                     seq_len)


def mfu(flops_per_token: float, tokens_per_s: float, peak_gflops: float | None,
        devices: int = 1) -> float | None:
    """The fraction of ``devices`` x ``peak_gflops`` that the run's model FLOPs reach."""
    if not peak_gflops or peak_gflops <= 0 or devices < 1:
        return None
    return flops_per_token * tokens_per_s / (peak_gflops * 1e9 * devices)


def seq_len_of(batch: dict) -> int:
    """The padded sequence length the attention runs over (0 without input_ids)."""
    ids = batch.get("input_ids")
    return int(ids.shape[-1]) if torch.is_tensor(ids) and ids.dim() >= 2 else 0
