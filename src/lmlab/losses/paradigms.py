"""Glue between the token stream, the pretraining losses and the shared loop.

``build_paradigm`` returns, for one ``objective=``, the batch maker the ``TokenStream`` calls
on raw windows (the corruption: masking, spans, a prefix, document masks) and the
``Objective`` the loop calls (forward + a pure loss from ``lmlab.losses.pretrain``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from lmlab.data.stream import document_mask, segments
from lmlab.losses import pretrain as L

OBJECTIVES = ("clm", "mlm", "span", "prefix", "electra")
ENCODERS = ("mlm", "electra")


def autocast(amp: torch.dtype | None):
    """bf16 mixed precision on CPU (fp32 master weights; matmuls in bf16, which AMX runs ~7x
    faster than fp32); nothing otherwise (the loop autocasts on GPUs)."""
    return torch.autocast("cpu", dtype=amp) if amp is not None else contextlib.nullcontext()


_INPUTS = ("input_ids", "attention_mask", "position_ids")


class TokenObjective:
    """Cross-entropy of the model's logits against aligned labels (clm, prefix, span, mlm)."""

    def __init__(self, *, decoder: bool = True, amp: torch.dtype | None = None):
        self.extra = {"use_cache": False} if decoder else {}
        self.amp = amp

    def count(self, batch: dict) -> int:
        return int((batch["labels"] != L.IGNORE).sum())

    def __call__(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        inputs = {k: batch[k] for k in _INPUTS if k in batch}
        with autocast(self.amp):
            logits = model(**inputs, **self.extra).logits  # (B, T, V)
        loss, _ = L.token_loss(logits, batch["labels"])
        return loss, {}


class ElectraObjective:
    """Generator MLM + weighted replaced-token detection (``ElectraPair.forward``)."""

    def __init__(self, weight: float = 50.0, amp: torch.dtype | None = None):
        self.weight, self.amp = weight, amp

    def count(self, batch: dict) -> int:
        return int((batch["labels"] != L.IGNORE).sum())

    def __call__(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        with autocast(self.amp):
            gen_logits, disc_logits, replaced = model(
                batch["input_ids"], batch["labels"], batch["seed"],
                attention_mask=batch.get("attention_mask"))
        loss, _, parts = L.electra_loss(gen_logits, batch["labels"], disc_logits, replaced,
                                        self.weight)
        return loss, parts


@dataclass
class Paradigm:
    name: str
    make_batch: Callable[[torch.Tensor, int], dict]  # windows (B, source_len + 1), seed
    objective: object
    source_len: int  # tokens per window the stream draws (plus one)
    generates: bool  # a causal LM that samples text


def special_ids(tokenizer) -> torch.Tensor:
    return torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)


def sentinel_tokens(n: int) -> list[str]:
    return [f"<extra_id_{k}>" for k in range(n)]


def build_paradigm(name: str, tokenizer, max_len: int, *, isolate_docs: bool = False,
                   amp: torch.dtype | None = None, positions_only: bool = False,
                   mlm_probability: float = 0.15,
                   span_density: float = 0.15, span_mean: float = 3.0,
                   electra_weight: float = 50.0) -> Paradigm:
    """The batch maker and objective of ``name`` for sequences of at most ``max_len`` tokens.

    ``isolate_docs``: a (B, 1, T, T) mask within documents and positions restarting at each;
    with ``positions_only`` (Falcon's ALiBi builds its bias from a 2D mask and refuses a 4D
    one) only the positions, from which transformers builds the same block-diagonal mask
    (``masking_utils.find_packed_sequence_indices``; no attention_mask, no cache)."""
    eos = tokenizer.eos_token_id

    def doc_parts(ids: torch.Tensor, causal: bool) -> dict:
        if not isolate_docs:
            return {}
        seg, pos = segments(ids, eos)
        if positions_only:
            return {"position_ids": pos}
        return {"attention_mask": document_mask(seg, causal), "position_ids": pos}

    if name == "clm":
        def make(w, seed):
            b = L.clm_batch(w)
            return {**b, **doc_parts(b["input_ids"], True)}

        return Paradigm(name, make, TokenObjective(amp=amp), max_len, True)
    if name == "prefix":
        def make(w, seed):
            b = L.clm_batch(w)
            g = torch.Generator().manual_seed(seed)
            T = b["input_ids"].size(1)
            p = torch.randint(1, T, (w.size(0),), generator=g)  # prefix lengths in [1, T-1]
            mask = L.prefix_lm_mask(p, T)
            extra = doc_parts(b["input_ids"], True)
            if extra:
                mask = mask & extra["attention_mask"]
            return {**b, **extra, "attention_mask": mask,
                    "labels": L.prefix_lm_labels(b["labels"], p)}

        return Paradigm(name, make, TokenObjective(amp=amp), max_len, True)
    if name == "span":
        src = L.span_source_length(max_len, span_density, span_mean)
        sentinels = tokenizer.convert_tokens_to_ids(
            sentinel_tokens(L.span_counts(src, span_density, span_mean)[1]))

        def make(w, seed):
            g = torch.Generator().manual_seed(seed)
            inputs, labels = L.span_corrupt(w[:, :src], g, sentinels=sentinels,
                                            density=span_density, mean_span=span_mean)
            return {"input_ids": inputs, "labels": labels}

        return Paradigm(name, make, TokenObjective(amp=amp), src, False)
    if name in ENCODERS:
        special = special_ids(tokenizer)

        def make(w, seed):
            g = torch.Generator().manual_seed(seed)
            ids = w[:, :-1]
            inputs, labels = L.mlm_corrupt(ids, g, mask_id=tokenizer.mask_token_id,
                                           vocab=len(tokenizer), special=special,
                                           p=mlm_probability)
            return {"input_ids": inputs, "labels": labels, "seed": seed,
                    **{k: v for k, v in doc_parts(ids, False).items() if k != "position_ids"}}

        objective = (TokenObjective(decoder=False, amp=amp) if name == "mlm"
                     else ElectraObjective(electra_weight, amp))
        return Paradigm(name, make, objective, max_len, False)
    raise ValueError(f"unknown objective {name!r}; known: {', '.join(OBJECTIVES)}")


def needed_tokens(name: str, max_len: int, span_density: float = 0.15,
                  span_mean: float = 3.0) -> tuple[str, ...]:
    """Special tokens the objective adds to the vocabulary."""
    if name in ENCODERS:
        return ("<mask>",)
    if name == "span":
        src = L.span_source_length(max_len, span_density, span_mean)
        return tuple(sentinel_tokens(L.span_counts(src, span_density, span_mean)[1]))
    return ()
