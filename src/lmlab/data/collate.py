"""Collate: encoded examples -> padded tensors that go straight into ``model(**inputs)``.

Legend: B batch, T the longest row in the batch (rounded up to ``pad_to_multiple_of``).
"""

from __future__ import annotations

import torch

from lmlab.data.chat import IGNORE


def _padded(rows: list[list[int]], width: int, value: int) -> torch.Tensor:
    out = torch.full((len(rows), width), value, dtype=torch.long)  # (B, T)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def _pad_positions(positions: list[int], width: int) -> list[int]:
    # Padding gets its own positions 0, 1, ... so transformers sees it as one more packed
    # sequence: real tokens never attend to it, and it needs no attention_mask.
    return list(positions) + list(range(width - len(positions)))


def collate(examples: list[dict], pad_id: int, *, pad_to_multiple_of: int | None = None
            ) -> dict[str, torch.Tensor]:
    """Right-pad examples to the longest; returns (B, T) long tensors.

    Unpacked examples: ``input_ids`` (pad_id), ``labels`` (-100), ``attention_mask`` (1 real,
    0 pad). Packed rows (they carry ``position_ids``): ``input_ids``, ``labels``,
    ``position_ids`` and deliberately *no* attention_mask, because passing one switches off
    transformers' block-diagonal mask for packed sequences (see ``lmlab.data.packing``);
    call the model with ``use_cache=False`` for the same reason.
    """
    if not examples:
        raise ValueError("collate needs at least one example")
    width = max(len(ex["input_ids"]) for ex in examples)
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    batch = {"input_ids": _padded([ex["input_ids"] for ex in examples], width, pad_id),
             "labels": _padded([ex["labels"] for ex in examples], width, IGNORE)}
    if "position_ids" in examples[0]:
        batch["position_ids"] = _padded([_pad_positions(ex["position_ids"], width)
                                         for ex in examples], width, 0)
    else:
        batch["attention_mask"] = _padded([[1] * len(ex["input_ids"]) for ex in examples],
                                          width, 0)
    return batch


def count_trained_tokens(batch: dict) -> int:
    """Labels that carry loss after the causal shift (position t predicts label t+1)."""
    return int((batch["labels"][:, 1:] != IGNORE).sum())
