"""Perplexity and bits-per-byte of a causal LM on held-out text.

Each item is a token sequence and the index of its first scored token; every later token is
predicted from the ones before it (teacher forcing). From the summed negative log-likelihood
``nll`` (nats) over ``n_tokens`` predicted tokens that decode to ``n_bytes`` UTF-8 bytes::

    perplexity    = exp(nll / n_tokens)
    bits_per_byte = nll / (ln 2 * n_bytes)

Bits-per-byte does not depend on the tokenizer, so it compares models with different
vocabularies; perplexity does not.

Legend: B rows, T padded length, V vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class NLL:
    nll: float  # summed negative log-likelihood, nats
    n_tokens: int
    n_bytes: int

    def metrics(self) -> dict:
        return {"perplexity": perplexity(self.nll, self.n_tokens),
                "bits_per_byte": bits_per_byte(self.nll, self.n_bytes),
                "tokens": self.n_tokens}


def perplexity(nll: float, n_tokens: int) -> float | None:
    return math.exp(nll / n_tokens) if n_tokens else None


def bits_per_byte(nll: float, n_bytes: int) -> float | None:
    return nll / (math.log(2) * n_bytes) if n_bytes else None


def windows(ids: list[int], length: int) -> list[tuple[list[int], int]]:
    """Non-overlapping windows of ``length`` tokens; in each, tokens 1.. are scored (token 0
    has no context), so the first token of every window goes unscored."""
    return [(ids[i:i + length], 1) for i in range(0, len(ids) - 1, length)
            if len(ids[i:i + length]) > 1]


@torch.no_grad()
def sequence_nll(model, tokenizer, items: list[tuple[list[int], int]], *,
                 batch_size: int = 8) -> NLL:
    """Summed NLL of ``items`` = [(token ids, first scored index)], right-padded in batches."""
    device = next(model.parameters()).device
    total, n_tok, n_bytes = 0.0, 0, 0
    for i in range(0, len(items), batch_size):
        chunk = items[i:i + batch_size]
        T = max(len(ids) for ids, _ in chunk)
        input_ids = torch.zeros(len(chunk), T, dtype=torch.long)
        mask = torch.zeros(len(chunk), T, dtype=torch.long)
        scored = torch.zeros(len(chunk), T, dtype=torch.bool)
        for r, (ids, start) in enumerate(chunk):
            input_ids[r, :len(ids)] = torch.tensor(ids)
            mask[r, :len(ids)] = 1
            scored[r, max(1, start):len(ids)] = True
            n_bytes += len(tokenizer.decode(ids[max(1, start):]).encode("utf-8"))
        logits = model(input_ids=input_ids.to(device),
                       attention_mask=mask.to(device)).logits.float()  # (B, T, V)
        logp = torch.log_softmax(logits[:, :-1], dim=-1)  # position t predicts token t+1
        tgt = input_ids[:, 1:].to(device)
        tok_logp = logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)  # (B, T-1)
        keep = scored[:, 1:].to(device)
        total += -tok_logp[keep].sum().item()
        n_tok += int(keep.sum())
    return NLL(total, n_tok, n_bytes)


def text_nll(model, tokenizer, texts: list[str], *, window: int = 256,
             batch_size: int = 8) -> NLL:
    """NLL of plain texts cut into windows of ``window`` tokens."""
    items = []
    for t in texts:
        items += windows(tokenizer(t, add_special_tokens=False)["input_ids"], window)
    return sequence_nll(model, tokenizer, items, batch_size=batch_size)


def completion_items(tokenizer, rows: list[dict], *, chat: bool = True) -> list[tuple]:
    """(ids, first scored index) for {prompt, answer} rows: only the answer is scored, after the
    prompt rendered as a chat turn (or as plain text when ``chat`` is false)."""
    items = []
    for r in rows:
        if chat and getattr(tokenizer, "chat_template", None):
            head = tokenizer.apply_chat_template([{"role": "user", "content": r["prompt"]}],
                                                 tokenize=False, add_generation_prompt=True)
        else:
            head = r["prompt"]
        p = tokenizer(head, add_special_tokens=False)["input_ids"]
        a = tokenizer(r["answer"], add_special_tokens=False)["input_ids"]
        items.append((p + a, len(p)))
    return items
