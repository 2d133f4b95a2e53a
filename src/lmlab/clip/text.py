"""A character tokenizer for captions: a fixed vocabulary (printable ASCII, lower-cased, plus
PAD, BOS, EOS and UNK), so a prompt never seen in training still tokenizes the same way.

``encode_batch`` -> ids (N, T) padded with PAD after EOS, and the EOS position of each row:
the causal text tower reads its feature there (CLIP's "EOT token" pooling).
"""

from __future__ import annotations

import torch

PAD, BOS, EOS, UNK = 0, 1, 2, 3
CHARS = [chr(c) for c in range(32, 127) if not chr(c).isupper()]
VOCAB_SIZE = 4 + len(CHARS)
_ID = {c: i + 4 for i, c in enumerate(CHARS)}


def encode(text: str, max_len: int) -> list[int]:
    """BOS, the characters (cut to fit), EOS: at most ``max_len`` ids."""
    body = [_ID.get(c, UNK) for c in text.lower()][:max_len - 2]
    return [BOS, *body, EOS]


def encode_batch(texts: list[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (N, T) with T the longest row, EOS positions (N,))."""
    rows = [encode(t, max_len) for t in texts]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
    return ids, torch.tensor([len(r) - 1 for r in rows])


def decode(ids: list[int]) -> str:
    return "".join(CHARS[i - 4] if i >= 4 else "" for i in ids)
