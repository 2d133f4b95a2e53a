"""Log-probability helpers shared by the preference stages.

``sequence_logps`` runs a causal LM once and returns, per row, the summed log-prob of the tokens
whose label is not -100 (the completion) and how many there are. ``collate_pairs`` stacks the
chosen rows over the rejected rows so one forward scores both. The reference callables give the
reference log-probs three ways: cached in the batch (full fine-tuning), the same model with its
LoRA adapters disabled, or an explicit frozen model.

Legend: B rows, T time, K trained positions shared by the batch, V vocabulary.
"""

from __future__ import annotations

from typing import Callable

import torch

from lmlab.losses.lm import IGNORE

Reference = Callable[[torch.nn.Module, dict], torch.Tensor]  # (model, batch) -> (B,) log-probs


def token_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) at each position, 0 where the target is -100. (B, K, V), (B, K) -> (B, K)."""
    logits = logits.float()
    safe = targets.clamp(min=0).unsqueeze(-1)  # (B, K, 1)
    picked = logits.gather(-1, safe).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return picked.masked_fill(targets == IGNORE, 0.0)


def _trained_positions(labels: torch.Tensor) -> torch.Tensor:
    """Positions t whose next-token label is trained in some row: (B, T) -> (K,)."""
    return (labels[:, 1:] != IGNORE).any(dim=0).nonzero().squeeze(-1)


def sequence_logps(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed completion log-probs (B,), completion token counts (B,)).

    Only the K positions that predict a trained token go through the LM head (the prompt is
    most of a preference row; the head is ~1/5 of SmolLM2's forward FLOPs).
    """
    labels = batch["labels"]
    idx = _trained_positions(labels)  # (K,)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                   use_cache=False, logits_to_keep=idx).logits  # (B, K, V)
    targets = labels[:, idx + 1]  # (B, K)
    return token_logps(logits, targets).sum(-1), (targets != IGNORE).sum(-1)


def collate_pairs(examples: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Preference examples -> one batch of 2B rows: chosen rows 0..B-1, rejected rows B..2B-1.

    Cached reference log-probs (``ref_chosen``, ``ref_rejected`` on the examples) come along as
    ``ref_logps`` (2B,) in the same order.
    """
    from lmlab.data import collate

    rows = [{"input_ids": ex[f"{side}_input_ids"], "labels": ex[f"{side}_labels"]}
            for side in ("chosen", "rejected") for ex in examples]
    batch = collate(rows, pad_id)
    if "ref_chosen" in examples[0]:
        batch["ref_logps"] = torch.tensor([ex["ref_chosen"] for ex in examples]
                                          + [ex["ref_rejected"] for ex in examples])
    return batch


def take_rows(batch: dict, start: int, stop: int) -> dict:
    """Rows [start, stop) of a right-padded batch, its columns cut to their longest real row.

    Per-row tensors (first dim = the batch's rows) are sliced; (rows, T) ones are also cut."""
    n = batch["input_ids"].shape[0]
    width = int(batch["attention_mask"][start:stop].sum(-1).max())
    out = {}
    for k, v in batch.items():
        if torch.is_tensor(v) and v.dim() >= 1 and v.shape[0] == n:
            v = v[start:stop]
            if v.dim() == 2:
                v = v[:, :width]
        out[k] = v
    return out


def pair_parts(batch: dict, min_saving: float = 0.1) -> list[dict]:
    """The pair batch as one part, or as its chosen and rejected halves when padding each half
    only to its own longest row saves at least ``min_saving`` of the positions (chosen and
    rejected replies of very different lengths: concise vs rambling)."""
    mask = batch.get("attention_mask")
    if mask is None:
        return [batch]
    n, T = mask.shape
    b = n // 2
    lengths = mask.sum(-1)  # (2B,)
    halves = b * (int(lengths[:b].max()) + int(lengths[b:].max()))
    if n * T - halves < min_saving * n * T:
        return [batch]
    return [take_rows(batch, 0, b), take_rows(batch, b, n)]


# --- references -----------------------------------------------------------------------------------


def _unwrap(model):
    return getattr(model, "module", model)  # DDP wraps the model; peft's methods live inside


def cached_reference(key: str = "ref_logps") -> Reference:
    """Reference log-probs computed once before training and carried in the batch."""
    return lambda model, batch: batch[key]


def adapter_reference(model, batch: dict, *, prefix: str = "") -> torch.Tensor:
    """The policy with its LoRA adapters disabled is the reference: no second model in memory."""
    sub = subbatch(batch, prefix)
    with torch.no_grad(), _unwrap(model).disable_adapter():
        return sequence_logps(model, sub)[0]


def model_reference(ref_model: torch.nn.Module, *, prefix: str = "") -> Reference:
    """An explicit frozen reference model."""
    def ref(model, batch):
        with torch.no_grad():
            return sequence_logps(ref_model, subbatch(batch, prefix))[0]
    return ref


def subbatch(batch: dict, prefix: str) -> dict:
    """The keys starting with ``prefix``, without it (``kl_input_ids`` -> ``input_ids``)."""
    if not prefix:
        return batch
    return {k[len(prefix):]: v for k, v in batch.items() if k.startswith(prefix)}


@torch.no_grad()
def precompute(model, examples: list[dict], collate: Callable[[list[dict]], dict],
               store: Callable[[list[dict], dict, torch.nn.Module], None], *,
               batch_size: int = 8) -> None:
    """Run ``store(chunk, batch, model)`` over ``examples`` in batches without gradients; the
    store function writes the reference values it computes onto the examples."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    for i in range(0, len(examples), batch_size):
        chunk = examples[i:i + batch_size]
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in collate(chunk).items()}
        store(chunk, batch, model)
    model.train(was_training)


# --- KL to the reference --------------------------------------------------------------------------


def token_kl(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """Exact KL(pi || pi_ref) over the vocabulary at each position: (B, K, V) x2 -> (B, K)."""
    logp = torch.log_softmax(logits.float(), -1)
    ref_logp = torch.log_softmax(ref_logits.float(), -1)
    return (logp.exp() * (logp - ref_logp)).sum(-1)


@torch.no_grad()
def completion_kl(model, ref_forward: Callable[[dict], torch.Tensor], batch: dict) -> torch.Tensor:
    """Summed per-token KL(pi || pi_ref) over each row's completion tokens, (B,).

    ``ref_forward(inputs) -> logits`` evaluates the reference on the same inputs (another model,
    or this one with its adapters disabled).
    """
    labels = batch["labels"]
    idx = _trained_positions(labels)  # (K,)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch.get("attention_mask"),
              "use_cache": False, "logits_to_keep": idx}
    kl = token_kl(model(**inputs).logits, ref_forward(inputs))  # (B, K)
    return kl.masked_fill(labels[:, idx + 1] == IGNORE, 0.0).sum(-1)


def disabled_adapter_forward(model) -> Callable[[dict], torch.Tensor]:
    def forward(inputs):
        with _unwrap(model).disable_adapter():
            return model(**inputs).logits
    return forward


def model_forward(ref_model) -> Callable[[dict], torch.Tensor]:
    return lambda inputs: ref_model(**inputs).logits
