"""Validation of a pretraining run: loss, perplexity and bits per byte; samples.

Bits per byte compare tokenizers: the val *text* is the same whatever the tokenizer, and

    bits_per_byte = (summed NLL in nats) / (ln 2 x bytes scored)

where the bytes scored are the UTF-8 bytes of every predicted token's text, each document
separator counted as one byte (a char tokenizer and a BPE tokenizer then score the same byte
count on the same text). The val stream is cut into windows that overlap by one token, so
every token but the first is predicted exactly once.
"""

from __future__ import annotations

import math

import torch

from lmlab.data.stream import eval_windows
from lmlab.models.compiling import eager


def scored_bytes(tokenizer, tokens: torch.Tensor) -> int:
    """UTF-8 bytes of ``tokens[1:]`` (the predicted ones), one per end-of-text separator."""
    ids = tokens[1:].tolist()
    seps = sum(1 for i in ids if i == tokenizer.eos_token_id)
    return len(tokenizer.decode(ids, skip_special_tokens=True).encode("utf-8")) + seps


def _batches(windows: list[torch.Tensor], batch_size: int):
    """Stacks of equal-length windows (the short last one alone)."""
    full = [w for w in windows if w.numel() == windows[0].numel()]
    for i in range(0, len(full), batch_size):
        yield torch.stack(full[i:i + batch_size])
    for w in windows[len(full):]:
        yield w[None]


@torch.no_grad()
def val_metrics(model, make_batch, objective, tokens: torch.Tensor, window: int, *,
                batch_size: int, n_bytes: int | None = None, causal: bool = True) -> dict:
    """Mean loss of ``objective`` over the val windows (batch ``i`` masked with seed ``i``);
    with ``causal`` (a next-token objective) also perplexity and bits per byte."""
    device = next(model.parameters()).device
    windows = eval_windows(tokens, window)
    if not causal:  # a corruption needs full windows
        windows = [w for w in windows if w.numel() == window + 1]
    total, count = 0.0, 0
    for i, w in enumerate(_batches(windows, batch_size)):
        batch = {k: v.to(device) if torch.is_tensor(v) else v
                 for k, v in make_batch(w, 1_000_003 + i).items()}
        loss, _ = objective(model, batch)
        total += float(loss)
        count += objective.count(batch)
    out = {"loss": total / max(count, 1), "tokens": count}
    if causal:
        out["perplexity"] = math.exp(min(out["loss"], 50.0))
        if n_bytes:
            out["bits_per_byte"] = total / (math.log(2) * n_bytes)
    return out


@torch.no_grad()
def samples(model, tokenizer, prompts: list[str], *, max_new_tokens: int, context: int,
            temperature: float = 0.8, top_k: int = 50, seed: int = 0) -> list[dict]:
    """One sampled continuation per prompt, each prompt after a document separator. The
    global RNG is left as it was (training resumes identically)."""
    device = next(model.parameters()).device
    out = []
    was_training = model.training
    model.eval()
    # uncompiled: sampling varies the shapes every token (compiling each would take longer)
    with torch.random.fork_rng(devices=[]), eager(model):
        torch.manual_seed(seed)
        for p in prompts:
            ids = [tokenizer.eos_token_id] + tokenizer(p, add_special_tokens=False)["input_ids"]
            ids = ids[-(context - 1):]
            n = max(1, min(max_new_tokens, context - len(ids)))
            gen = model.generate(torch.tensor([ids], device=device), do_sample=True,
                                 temperature=temperature, top_k=top_k, max_new_tokens=n,
                                 pad_token_id=tokenizer.eos_token_id, eos_token_id=None)
            out.append({"prompt": p, "completion": tokenizer.decode(gen[0, len(ids):].tolist())})
    model.train(was_training)
    return out
