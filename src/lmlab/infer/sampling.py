"""Sampling as composable pure logits transforms with an explicit RNG.

Each transform is a pure function of the next-token logits (and, for penalties, of the tokens
seen so far); none mutates its input. ``build_transforms(params)`` turns a ``SamplingParams``
into the ordered list of transforms, and ``sample`` applies them and draws one token per row.

Shapes: B = batch rows, V = vocabulary, T = tokens so far (prompt + generated, left padded).
``History.tokens`` is (B, T) with -1 at padding; columns ``>= prompt_len`` are generated.

Order (the one HF ``generate`` uses, so settings mean the same thing there and here):
logit bias, repetition / presence / frequency penalties, no-repeat n-gram, min-new-tokens EOS
ban, then temperature, top-k, top-p, min-p, typical-p. Greedy (temperature 0) applies only the
first group and takes the argmax.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Callable

import numpy as np
import torch

from lmlab.errors import UserError

NEG_INF = float("-inf")


@dataclass(frozen=True)
class History:
    """What penalties look at: the tokens so far, (B, T) long, -1 at left padding."""

    tokens: torch.Tensor
    prompt_len: int  # columns before this are the (padded) prompt

    @classmethod
    def empty(cls, batch: int, device: torch.device | str = "cpu") -> "History":
        return cls(torch.empty(batch, 0, dtype=torch.long, device=device), 0)

    @property
    def generated(self) -> torch.Tensor:  # (B, T - prompt_len)
        return self.tokens[:, self.prompt_len:]


Transform = Callable[[torch.Tensor, History], torch.Tensor]  # (B, V) logits -> (B, V) logits


# ----------------------------------------------------------------------------- parameters


@dataclass
class SamplingParams:
    """How to pick each next token and when to stop. Defaults: plain sampling at T=1."""

    max_new_tokens: int = 256
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    min_p: float = 0.0  # 0 = off
    typical_p: float = 1.0  # 1 = off
    repetition_penalty: float = 1.0  # HF/CTRL style, over prompt + generated; 1 = off
    presence_penalty: float = 0.0  # OpenAI style, over generated tokens; 0 = off
    frequency_penalty: float = 0.0  # OpenAI style, over generated tokens; 0 = off
    no_repeat_ngram_size: int = 0  # 0 = off
    logit_bias: dict[int, float] = field(default_factory=dict)  # token id -> added to logit
    min_new_tokens: int = 0  # EOS / stop tokens are banned before this many tokens
    stop: list[str] = field(default_factory=list)  # stop strings (not part of the text)
    stop_token_ids: list[int] = field(default_factory=list)  # in addition to the model's EOS
    ignore_eos: bool = False
    logprobs: bool = False  # return the log-probability of each chosen token
    logprobs_mode: str = "raw"  # raw: model log-softmax | processed: after the transforms
    seed: int | None = None  # seeds the generator when none is passed

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.validate()

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def problems(self) -> list[str]:
        """Every invalid field, each named (empty when all is well)."""
        p: list[str] = []

        def num(name: str) -> float | None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
                p.append(f"{name}: must be a number, got {v!r}")
                return None
            return v

        for name in ("max_new_tokens", "top_k", "no_repeat_ngram_size", "min_new_tokens"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                p.append(f"{name}: must be an integer, got {v!r}")
            elif v < 0:
                p.append(f"{name}: must be >= 0, got {v}")
        if (t := num("temperature")) is not None and t < 0:
            p.append(f"temperature: must be >= 0 (0 = greedy), got {t}")
        if (v := num("top_p")) is not None and not 0 < v <= 1:
            p.append(f"top_p: must be in (0, 1], got {v}")
        if (v := num("typical_p")) is not None and not 0 < v <= 1:
            p.append(f"typical_p: must be in (0, 1], got {v}")
        if (v := num("min_p")) is not None and not 0 <= v <= 1:
            p.append(f"min_p: must be in [0, 1], got {v}")
        if (v := num("repetition_penalty")) is not None and v <= 0:
            p.append(f"repetition_penalty: must be > 0 (1 = off), got {v}")
        num("presence_penalty")
        num("frequency_penalty")
        if not isinstance(self.logit_bias, dict) or not all(
                isinstance(k, int) and isinstance(v, (int, float)) for k, v in
                self.logit_bias.items()):
            p.append(f"logit_bias: must map token ids (int) to numbers, got {self.logit_bias!r}")
        if not isinstance(self.stop, (list, tuple)) or not all(
                isinstance(s, str) and s for s in self.stop):
            p.append(f"stop: must be a list of non-empty strings, got {self.stop!r}")
        if not isinstance(self.stop_token_ids, (list, tuple)) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in self.stop_token_ids):
            p.append(f"stop_token_ids: must be a list of token ids, got {self.stop_token_ids!r}")
        if self.logprobs_mode not in ("raw", "processed"):
            p.append(f"logprobs_mode: must be 'raw' or 'processed', got {self.logprobs_mode!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or
                                      not isinstance(self.seed, int)):
            p.append(f"seed: must be an integer or None, got {self.seed!r}")
        return p

    def validate(self) -> None:
        if problems := self.problems():
            raise UserError("invalid sampling parameters:\n" +
                            "\n".join(f"  - {x}" for x in problems))

    @classmethod
    def from_dict(cls, d: dict) -> "SamplingParams":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"unknown sampling parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**d)


# ----------------------------------------------------------------------------- transforms


def temperature(logits: torch.Tensor, t: float) -> torch.Tensor:
    return logits / t


def top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits per row (ties at the k-th value are kept)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, NEG_INF)


def _keep_sorted_prefix(logits: torch.Tensor, order: torch.Tensor, probs_sorted: torch.Tensor,
                        mass: float) -> torch.Tensor:
    """Keep tokens, in ``order``, while the probability mass before them is < ``mass``
    (the smallest prefix reaching ``mass``; always at least one token)."""
    cum = probs_sorted.cumsum(-1)  # (B, V)
    keep_sorted = torch.ones_like(cum, dtype=torch.bool)
    keep_sorted[..., 1:] = cum[..., :-1] < mass  # mass strictly before each token
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return logits.masked_fill(~keep, NEG_INF)


def top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus: the smallest set of most likely tokens whose probability reaches p."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    return _keep_sorted_prefix(logits, order, sorted_logits.softmax(-1), p)


def min_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Drop tokens less likely than p times the most likely token."""
    if p <= 0.0:
        return logits
    probs = logits.softmax(-1)
    floor = p * probs.max(dim=-1, keepdim=True).values
    return logits.masked_fill(probs < floor, NEG_INF)


def typical_p(logits: torch.Tensor, mass: float) -> torch.Tensor:
    """Locally typical sampling (Meister et al. 2022): keep the tokens whose surprisal is
    closest to the entropy, until their probability reaches ``mass``."""
    if mass >= 1.0:
        return logits
    logp = logits.log_softmax(-1)
    probs = logp.exp()
    entropy = -(logp * probs).nansum(-1, keepdim=True)  # nansum: -inf * 0 at masked tokens
    distance = (-logp - entropy).abs()
    _, order = torch.sort(distance, dim=-1)
    return _keep_sorted_prefix(logits, order, probs.gather(-1, order), mass)


def _counts(tokens: torch.Tensor, vocab: int) -> torch.Tensor:
    """(B, T) ids with -1 at padding -> (B, V) occurrence counts."""
    idx = torch.where(tokens < 0, vocab, tokens)
    c = torch.zeros(tokens.shape[0], vocab + 1, dtype=torch.float32, device=tokens.device)
    c.scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float32))
    return c[:, :vocab]


def repetition_penalty(logits: torch.Tensor, tokens: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL (Keskar et al. 2019) as in HF: logits of seen tokens are divided by ``penalty``
    when positive and multiplied when negative."""
    if penalty == 1.0 or tokens.numel() == 0:
        return logits
    seen = _counts(tokens, logits.shape[-1]) > 0
    penalized = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalized, logits)


def presence_frequency_penalty(logits: torch.Tensor, tokens: torch.Tensor, presence: float,
                               frequency: float) -> torch.Tensor:
    """OpenAI style: subtract ``presence`` once per seen token and ``frequency`` per
    occurrence."""
    if (presence == 0 and frequency == 0) or tokens.numel() == 0:
        return logits
    c = _counts(tokens, logits.shape[-1]).to(logits.dtype)
    return logits - presence * (c > 0).to(logits.dtype) - frequency * c


def no_repeat_ngram(logits: torch.Tensor, tokens: torch.Tensor, n: int) -> torch.Tensor:
    """Ban every token that would complete an n-gram already present in the row."""
    B, T = tokens.shape
    if n <= 0 or T < n:
        return logits
    if n == 1:
        return logits.masked_fill(_counts(tokens, logits.shape[-1]) > 0, NEG_INF)
    windows = tokens.unfold(1, n, 1)  # (B, T-n+1, n)
    tail = tokens[:, T - n + 1:]  # (B, n-1): the prefix the next token would extend
    match = (windows[:, :, :-1] == tail[:, None, :]).all(-1)  # (B, T-n+1)
    match &= (windows >= 0).all(-1) & (tail >= 0).all(-1, keepdim=True)  # no padding
    V = logits.shape[-1]
    banned_ids = torch.where(match, windows[:, :, -1], V)  # V = nothing banned
    banned = torch.zeros(B, V + 1, dtype=torch.bool, device=logits.device)
    banned.scatter_(1, banned_ids, True)
    return logits.masked_fill(banned[:, :V], NEG_INF)


def logit_bias(logits: torch.Tensor, bias: dict[int, float]) -> torch.Tensor:
    if not bias:
        return logits
    ids = torch.tensor(list(bias), dtype=torch.long, device=logits.device)
    vals = torch.tensor(list(bias.values()), dtype=logits.dtype, device=logits.device)
    return logits.index_add(-1, ids, vals.expand(logits.shape[0], -1))


def ban_tokens(logits: torch.Tensor, ids: list[int]) -> torch.Tensor:
    if not ids:
        return logits
    out = logits.clone()
    out[:, ids] = NEG_INF
    return out


# ----------------------------------------------------------------------------- composition


def _on_tokens(fn, *args) -> Transform:
    return lambda logits, h: fn(logits, h.tokens, *args)


def _on_generated(fn, *args) -> Transform:
    return lambda logits, h: fn(logits, h.generated, *args)


def _plain(fn, *args) -> Transform:
    return lambda logits, h: fn(logits, *args)


def build_transforms(params: SamplingParams, *, eos_token_ids: list[int] = ()) -> list[Transform]:
    """The ordered transforms ``params`` asks for (empty list = plain softmax / argmax)."""
    out: list[Transform] = []
    if params.logit_bias:
        out.append(_plain(logit_bias, dict(params.logit_bias)))
    if params.repetition_penalty != 1.0:
        out.append(_on_tokens(repetition_penalty, params.repetition_penalty))
    if params.presence_penalty or params.frequency_penalty:
        out.append(_on_generated(presence_frequency_penalty, params.presence_penalty,
                                 params.frequency_penalty))
    if params.no_repeat_ngram_size:
        out.append(_on_tokens(no_repeat_ngram, params.no_repeat_ngram_size))
    stops = sorted(set(eos_token_ids) | set(params.stop_token_ids))
    if params.min_new_tokens and stops:
        n = params.min_new_tokens
        out.append(lambda logits, h: ban_tokens(logits, stops) if h.generated.shape[1] < n
                   else logits)
    if params.greedy:
        return out
    if params.temperature != 1.0:
        out.append(_plain(temperature, params.temperature))
    if params.top_k:
        out.append(_plain(top_k, params.top_k))
    if params.top_p < 1.0:
        out.append(_plain(top_p, params.top_p))
    if params.min_p > 0.0:
        out.append(_plain(min_p, params.min_p))
    if params.typical_p < 1.0:
        out.append(_plain(typical_p, params.typical_p))
    return out


def apply_transforms(logits: torch.Tensor, transforms: list[Transform],
                     history: History) -> torch.Tensor:
    for t in transforms:
        logits = t(logits, history)
    return logits


def draw(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of ``probs`` (..., V), each with probability proportional to its
    entry (rows need not sum to 1; entries must be >= 0 with a positive sum).

    Inverse CDF: one uniform u per row, the first token whose running sum (float64) exceeds
    u times the row's total. ``torch.multinomial`` draws one exponential per vocabulary entry
    instead: ~9 ms for 8 rows of SmolLM2's 49,152 tokens on the 2-core CPU vs ~0.4 ms here,
    about a seventh of a rollout step. A zero-probability token is never drawn: its running
    sum equals its predecessor's, so the search stops earlier."""
    shape = probs.shape
    cdf = probs.reshape(-1, shape[-1]).double().cumsum(-1)
    total = cdf[:, -1:]
    if not bool((total > 0).all()):  # (NaN compares False too)
        raise UserError("sampling: a row has no token left to draw from (every token filtered "
                        "out, or NaN / infinite logits)")
    u = torch.rand(total.shape, generator=generator, dtype=torch.float64,
                   device=probs.device) * total
    idx = torch.searchsorted(cdf, u, right=True)
    # u * total may round up to total: take the last token with a positive entry instead
    last = cdf.shape[-1] - 1 - (probs.reshape(cdf.shape) > 0).flip(-1).int().argmax(-1,
                                                                                     keepdim=True)
    return torch.minimum(idx, last).reshape(shape[:-1])


def argmax(logits: torch.Tensor) -> torch.Tensor:
    """``logits.argmax(-1)`` (the first index of the largest value, NaN counting as largest).
    On a CPU float32 tensor that needs no gradient it runs through numpy, whose argmax is
    vectorised: 4 us vs torch's 43 us for one row of 49,152 (2026-12-05), each decode step."""
    if logits.device.type == "cpu" and logits.dtype == torch.float32 and \
            not logits.requires_grad and logits.dim() >= 1 and logits.shape[-1] > 0:
        return torch.from_numpy(np.asarray(logits.numpy().argmax(-1))).to(torch.long)
    return logits.argmax(-1)


def pick(logits: torch.Tensor, greedy: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Processed logits (B, V) -> next tokens (B,): argmax, or a draw from their softmax."""
    if greedy:
        return argmax(logits)
    return draw(logits.float().softmax(-1), generator)


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """An explicit RNG: seeded when ``seed`` is given, else from fresh OS entropy."""
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    else:
        g.manual_seed(seed)
    return g


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None = None,
           *, history: History | None = None, eos_token_ids: list[int] = ()) -> torch.Tensor:
    """Next tokens (B,) for next-token logits (B, V) under ``params``."""
    if history is None:
        history = History.empty(logits.shape[0], logits.device)
    processed = apply_transforms(logits, build_transforms(params, eos_token_ids=eos_token_ids),
                                 history)
    return pick(processed, params.greedy, generator)
