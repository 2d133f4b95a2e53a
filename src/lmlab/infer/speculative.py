"""Speculative decoding: a cheap drafter proposes tokens, the target checks them in one forward.

Two drafters (anything with ``propose`` / ``rollback`` works, see ``Drafter``):

- ``DraftModel``: a smaller causal LM with the same tokenizer, with its own KV cache;
- ``PromptLookup``: no model; copy what followed an earlier occurrence of the last n tokens
  (Saxena 2023, "prompt lookup decoding") - strong when the output quotes the
  input (extraction, summaries, code edits).

Verification (Leviathan et al. 2023, Chen et al. 2023). The target scores
``[last, d_1 .. d_g]`` in one forward, giving p_1 .. p_{g+1}. Greedy: keep d_i while it is the
target's argmax, then take the target's own token, so the output is plain greedy's. Sampling:
keep d_i with probability ``min(1, p_i(d_i) / q_i(d_i))``; at the first rejection draw from
``norm(max(0, p_i - q_i))``; if all g are kept draw a bonus token from p_{g+1}. Every token
then follows the target distribution exactly. A prompt-lookup proposal is a point mass
(q = 1 on d_i), so it is kept with probability p_i(d_i).

One prompt at a time (rows accept different numbers of tokens, so batch rows would drift
apart); the text-level helper loops over prompts. State kept between rounds: the target cache
holds every committed token but the last one, which is fed with the next drafts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F

from lmlab.errors import UserError
from lmlab.infer.fastpath import LlamaStep, lin_few_rows
from lmlab.infer.packed import linear_over, packed_linears
from lmlab.infer.prefix import LastPromptKV, reuse_order
from lmlab.infer.decode import Completion, Prompt, StopStrings, TextStream, check_context, \
    completion_text, encode_prompts, eos_ids, eval_mode, model_device
from lmlab.infer.sampling import History, SamplingParams, apply_transforms, argmax, \
    build_transforms, draw, make_generator
from lmlab.models.compat import with_cache


@dataclass
class SpecStats:
    """Per call. ``acceptance_rate`` = accepted / proposed drafts; ``mean_accepted`` = accepted
    drafts per target forward; each target forward also yields one token of its own."""

    proposed: int = 0
    accepted: int = 0
    target_forwards: int = 0
    new_tokens: int = 0
    seconds: float = 0.0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def mean_accepted(self) -> float:
        return self.accepted / self.target_forwards if self.target_forwards else 0.0

    @property
    def tokens_per_forward(self) -> float:
        return self.new_tokens / self.target_forwards if self.target_forwards else 0.0

    def add(self, other: "SpecStats") -> None:
        for k in ("proposed", "accepted", "target_forwards", "new_tokens", "seconds"):
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def as_dict(self) -> dict:
        return {"proposed": self.proposed, "accepted": self.accepted,
                "target_forwards": self.target_forwards, "new_tokens": self.new_tokens,
                "acceptance_rate": round(self.acceptance_rate, 4),
                "mean_accepted": round(self.mean_accepted, 4),
                "tokens_per_forward": round(self.tokens_per_forward, 4),
                "seconds": round(self.seconds, 4)}


@dataclass
class SpecOutput:
    tokens: list[int]
    finish_reason: str
    logprobs: list[float] | None
    stats: SpecStats = field(default_factory=SpecStats)


class Drafter(Protocol):
    def propose(self, seq: list[int], k: int, history_transforms, prompt_len: int,
                greedy: bool, generator) -> tuple[list[int], torch.Tensor | None]:
        """Up to k tokens to follow ``seq``, and their proposal distributions (k', V), or
        None for a deterministic proposal (a point mass on each token)."""

    def rollback(self, valid: int) -> None:
        """Only the first ``valid`` tokens of the sequence still stand."""


# ----------------------------------------------------------------------------- drafters


class PromptLookup:
    """Draft by copying: find an earlier match of the last n tokens (n = max_ngram ..
    min_ngram, the longest that matches) and propose what followed it. ``prefer``: which match
    when there are several - ``"first"`` (as HF's prompt lookup: usually in the prompt, the
    text being quoted) or ``"last"`` (the most recent, often in the output so far). Replaying
    SmolLM2-135M's greedy outputs on seven input-grounded prompts, "first" needed 0.3 / 2.0 /
    3.2 / 2.5 % fewer checks at k = 3 / 5 / 7 / 10, and at k = 7 no prompt needed more
    (benchmarks/RESULTS.md, Inference, "Session 12")."""

    PREFER = ("first", "last")

    def __init__(self, max_ngram: int = 3, min_ngram: int = 1, prefer: str = "first"):
        if not 1 <= min_ngram <= max_ngram:
            raise UserError(f"prompt_lookup_max_ngram: must be >= min_ngram >= 1, got "
                            f"max {max_ngram}, min {min_ngram}")
        if prefer not in self.PREFER:
            raise UserError(f"prompt_lookup_prefer: must be one of {', '.join(self.PREFER)}, "
                            f"got {prefer!r}")
        self.max_ngram, self.min_ngram, self.prefer = max_ngram, min_ngram, prefer

    def propose(self, seq, k, transforms, prompt_len, greedy, generator):
        s = torch.tensor(seq)
        L = len(seq)
        for n in range(min(self.max_ngram, L - 1), self.min_ngram - 1, -1):
            windows = s[:L - 1].unfold(0, n, 1)  # (L-n, n): starts 0 .. L-n-1, never the tail
            hits = (windows == s[L - n:]).all(1).nonzero()
            if len(hits):
                start = int(hits[0 if self.prefer == "first" else -1]) + n  # what followed
                return seq[start:start + k], None
        return [], None

    def rollback(self, valid: int) -> None:
        pass


def replay_rounds(prompt: list[int], out: list[int], drafter, k: int,
                  max_new_tokens: int) -> dict:
    """The rounds of a greedy speculative run (``speculative_decode``, no logits transforms)
    whose output is ``out``, without the target: greedy checks keep exactly the drafts equal to
    the next tokens of ``out`` and add the one after them, so the drafter alone decides the
    rounds. -> {"checks": target forwards, "drafted": tokens proposed, "accepted": drafts kept}.
    For comparing drafters (``PromptLookup``'s settings) on known outputs in seconds; a drafter
    whose proposals depend on the target's logits cannot be replayed."""
    seq, pos = list(prompt), 0
    got = {"checks": 0, "drafted": 0, "accepted": 0}
    while pos < len(out):
        budget = min(k, max_new_tokens - pos - 1)
        drafts = drafter.propose(seq, budget, [], len(prompt), True, None)[0] \
            if budget > 0 else []
        n = 0
        while n < len(drafts) and pos + n < len(out) and drafts[n] == out[pos + n]:
            n += 1
        new = out[pos:pos + n + 1]
        got["checks"] += 1
        got["drafted"] += len(drafts)
        got["accepted"] += n
        seq += new
        pos += len(new)
        drafter.rollback(len(seq) - 1)
    return got


class Incremental:
    """One sequence's incremental forward with rollback: the lean ``LlamaStep`` buffers when
    the model supports them (grown as needed), else the HF forward with a ``DynamicCache``."""

    def __init__(self, model, fast: bool | None = None, pack: bool | str = False,
                 native_bf16: bool = False, prefix: LastPromptKV | None = None):
        """``prefix``: the first feed (last position only, lean step) reuses the opening tokens
        it shares with the prompt before (``infer.prefix``)."""
        self.model, self.n = model, 0  # n = tokens in the cache
        self.prefix = prefix
        # oneDNN-packed weights (infer.packed), or F.linear but W @ x^T for a check's few rows
        lin = packed_linears(model, pack) if pack else lin_few_rows
        self.fast = LlamaStep(model, None, 1, 64, lin=lin, native_bf16=native_bf16) \
            if fast is not False and LlamaStep.supports(model) else None
        self.cache = None
        if self.fast is None:
            from transformers import DynamicCache

            self.cache = DynamicCache(config=model.config)

    def feed(self, tokens: list[int], last_only: bool = False, head=None) -> torch.Tensor:
        """Append ``tokens``; their next-token logits (L, V), or (1, V) with ``last_only``.
        ``head``: ``LlamaStep.step``'s (the lean step only; the HF forward ignores it)."""
        dev, L = model_device(self.model), len(tokens)
        if self.n == 0 and last_only and self.prefix is not None and self.fast is not None:
            self.fast.ensure(L)
            logits = self.prefix.prefill(self.fast, list(tokens), head=head)[0]
            self.n = L
            return logits.float()
        ids = torch.tensor([tokens], device=dev)
        pos = torch.arange(self.n, self.n + L, device=dev)[None]
        if self.fast is not None:
            self.fast.ensure(self.n + L)
            logits = self.fast.step(ids, pos, self.n + L, None, last_only=last_only,
                                    head=head)[0]
        else:
            logits = self.model(input_ids=ids, position_ids=pos,
                                **with_cache(self.model, self.cache), use_cache=True,
                                logits_to_keep=1 if last_only else 0).logits[0]
        self.n += L
        return logits.float()

    def greedy(self, token: int, steps: int, head=None) -> list[int] | None:
        """Append ``token`` and the greedy tokens after it, ``steps`` of them, all but the last
        fed (one C call, ``LlamaStep.greedy``) -> those tokens, or None where the C step does
        not run (nothing appended)."""
        if self.fast is None:
            return None
        got = self.fast.greedy(token, self.n, self.n + 1, steps, (), head)
        if got is None:
            return None
        self.n += steps
        return got[0]

    def crop(self, n: int) -> None:
        """Keep the first ``n`` tokens."""
        if n < self.n:
            if self.cache is not None:
                self.cache.crop(n - self.n)  # negative: tokens to drop
            self.n = n


class DraftModel:
    """A small same-vocabulary causal LM proposing k tokens, one cached forward each.

    ``vocab``: score only the first ``vocab`` token ids plus every token of the prompt (the
    rest get probability 0), through a copy of those rows of the LM head. A draft's LM head
    is as large as the target's (49,152 x 576 for SmolLM2, 113 MB: ~4 ms of every drafted
    token on the 2-core CPU); BPE ids are roughly in merge order, frequent pieces first, so
    the first 16,384 cover ~97% of the tokens SmolLM2 writes on the built-in tasks. Exact all
    the same: greedy output is still the target's, and a sampled draft's q is a proper
    distribution (zero outside the kept ids), so the rejection rule keeps the target's
    distribution; a token the draft cannot propose only costs a rejection. Lean step only
    (``LlamaStep.supports``); the HF-forward fallback scores the whole vocabulary.

    ``bf16`` (with ``pack``, where the native C step runs): the draft's one-token steps read
    bfloat16 copies of its weights, half the bytes (the step is bound by memory bandwidth).
    Exact all the same, for the same reason: only the draft's proposals (and so the
    acceptance rate) can move, and a sampled draft's q is the distribution it drew from."""

    def __init__(self, model, fast: bool | None = None, pack: bool | str = False,
                 vocab: int | None = None, bf16: bool = True,
                 prefix: LastPromptKV | None = None):
        if vocab is not None and (isinstance(vocab, bool) or not isinstance(vocab, int)
                                  or vocab < 1):
            raise UserError(f"draft_vocab: must be an integer >= 1, got {vocab!r}")
        self.model = model if not any(m.training for m in model.modules()) else model.eval()
        self.inc = Incremental(self.model, fast, pack, native_bf16=bf16, prefix=prefix)
        self.vocab, self.pack = vocab, pack
        self.keep = self.head = None

    def _restrict(self, prompt: list[int]) -> None:
        """The kept ids (first ``vocab`` + the prompt's) and a head over their rows."""
        weight = self.model.get_output_embeddings().weight
        V = self.V = weight.shape[0]
        if self.vocab is None or self.vocab >= V or self.inc.fast is None:
            return
        extra = torch.tensor(sorted({t for t in prompt if t >= self.vocab}), dtype=torch.long,
                             device=weight.device)
        self.keep = torch.cat([torch.arange(self.vocab, device=weight.device), extra])
        self.keep_ids = self.keep.tolist()
        self.head = KeptRows(weight.detach(), self.vocab, extra, self.pack)

    def _feed(self, tokens, last_only=False, full=True) -> torch.Tensor:
        """Logits for the next token after each of ``tokens``: over the whole vocabulary (-inf
        outside the kept ids), or with ``full=False`` over the kept ids only."""
        logits = self.inc.feed(tokens, last_only=last_only, head=self.head)
        if self.keep is None or not full:
            return logits
        full = logits.new_full((logits.shape[0], self.V), float("-inf"))
        full[:, self.keep] = logits
        return full

    def propose(self, seq, k, transforms, prompt_len, greedy, generator):
        drafts, qs = [], []
        if self.inc.n == 0 and self.vocab is not None:
            self._restrict(seq[:prompt_len])
        # plain greedy: the argmax over the kept ids is the token (kept ids increase, so ties go
        # to the lowest id as over the whole row); no history, no full-vocabulary row
        plain = greedy and not transforms
        keep = self.keep_ids if plain and self.keep is not None else None
        logits = self._feed(seq[self.inc.n:], last_only=True, full=not plain)[-1]
        if plain and k > 1:  # the other k-1 in one call into C, where it runs
            j = int(argmax(logits))
            tok = keep[j] if keep is not None else j
            more = self.inc.greedy(tok, k - 1, head=self.head)
            if more is not None:
                return [tok] + more, None
        for i in range(k):
            if plain:
                j = int(argmax(logits))
                tok = keep[j] if keep is not None else j
            else:
                hist = History(torch.tensor([seq + drafts], device=logits.device), prompt_len)
                processed = apply_transforms(logits[None], transforms, hist)[0]
                if greedy:
                    tok = int(argmax(processed))
                else:
                    q = processed.softmax(-1)
                    tok = int(draw(q, generator))
                    qs.append(q)
            drafts.append(tok)
            if i + 1 < k:
                logits = self._feed([tok], full=not plain)[-1]
        return drafts, (torch.stack(qs) if qs else None)

    def rollback(self, valid: int) -> None:
        self.inc.crop(valid)


class KeptRows:
    """An LM head over some of its rows: the first ``first``, then those at ``extra`` (ids in
    increasing order). Called on hidden states: the first call (the draft's prefill) reads the
    rows where they are; later ones (one-token steps in torch) use a packed copy of them, taken
    on the second call. The native step reads ``native_rows`` = (first, the extra rows) itself,
    with no copy of the first rows."""

    def __init__(self, weight: torch.Tensor, first: int, extra: torch.Tensor, pack: bool):
        self.weight, self.first, self.pack = weight, first, pack
        self.native_rows = (first, weight[extra])
        self.native_ids = extra.to(torch.long).contiguous()  # the extra rows' token ids
        self._torch, self.calls = None, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 1:  # one product: a packed copy (gather + reorder) would cost more
            return torch.cat([F.linear(x, self.weight[:self.first]),
                              F.linear(x, self.native_rows[1])], -1)
        if self._torch is None:
            self._torch = linear_over(torch.cat([self.weight[:self.first],
                                                 self.native_rows[1]]), self.pack)
        return self._torch(x)


def check_same_vocab(target, draft, tokenizer=None, draft_tokenizer=None) -> None:
    """Raise UserError unless the draft can propose the target's tokens."""
    tv = target.get_output_embeddings().weight.shape[0]
    dv = draft.get_output_embeddings().weight.shape[0]
    if tv != dv or target.config.vocab_size != draft.config.vocab_size:
        raise UserError(f"draft: vocabulary size {dv} differs from the target's {tv}; the "
                        "draft model must share the target's tokenizer")
    if tokenizer is not None and draft_tokenizer is not None and \
            tokenizer.get_vocab() != draft_tokenizer.get_vocab():
        raise UserError("draft: its tokenizer's vocabulary differs from the target's; the "
                        "draft model must share the target's tokenizer")


# ----------------------------------------------------------------------------- verification


def _verify(p: torch.Tensor, drafts: list[int], q: torch.Tensor | None, greedy: bool,
            generator) -> tuple[int, int]:
    """p (g+1, V) target probabilities (or processed logits when greedy) at each draft
    position. Returns (accepted drafts k, the target's next token after them)."""
    for i, d in enumerate(drafts):
        if greedy:
            best = int(argmax(p[i]))
            if best != d:
                return i, best
            continue
        ratio = p[i, d] / (q[i, d] if q is not None else 1.0)
        u = torch.rand((), generator=generator, device=p.device)
        if u >= ratio:  # rejected: draw from what the target has left over
            resid = p[i].clone()
            if q is not None:
                resid = (resid - q[i]).clamp(min=0)
            else:
                resid[d] = 0.0
            if float(resid.sum()) <= 0:
                resid = p[i]
            return i, int(draw(resid, generator))
    g = len(drafts)
    last = int(argmax(p[g])) if greedy else int(draw(p[g], generator))
    return g, last


def speculative_decode(model, input_ids: torch.Tensor, params: SamplingParams, *,
                       drafter: Drafter, num_draft_tokens: int = 5,
                       eos_token_ids: list[int] | None = None, tokenizer=None,
                       generator: torch.Generator | None = None,
                       fast: bool | None = None, pack: bool | str = False,
                       prefix: LastPromptKV | None = None,
                       on_tokens: Callable[[list[int]], None] | None = None) -> SpecOutput:
    """Decode one prompt (1, P) or (P,) with speculative decoding; output follows ``params``
    exactly as plain decoding would (greedy: the same tokens; sampling: the same
    distribution). ``pack``: the target runs oneDNN-packed weights (``infer.packed``);
    ``prefix``: the target's prefill reuses the opening tokens shared with the last prompt.
    ``on_tokens``: called after each check that did not end the output, with the tokens it
    added."""
    if isinstance(num_draft_tokens, bool) or not isinstance(num_draft_tokens, int) or \
            num_draft_tokens < 1:
        raise UserError(f"num_draft_tokens: must be an integer >= 1, got {num_draft_tokens!r}")
    ids = input_ids.reshape(-1).tolist()
    if input_ids.dim() == 2 and input_ids.shape[0] != 1:
        raise UserError("speculative decoding takes one prompt at a time")
    check_context(model, [len(ids)], params.max_new_tokens)
    eos = [] if params.ignore_eos else (eos_ids(model, tokenizer) if eos_token_ids is None
                                        else list(eos_token_ids))
    stop_ids = set(eos) | set(params.stop_token_ids)
    stops = StopStrings(tokenizer, params.stop)
    transforms = build_transforms(params, eos_token_ids=sorted(stop_ids))
    if generator is None and not params.greedy:
        generator = make_generator(params.seed, model_device(model))
    out = SpecOutput([], "length", [] if params.logprobs else None)
    if params.max_new_tokens == 0:
        return out
    t0 = time.perf_counter()
    with eval_mode(model), torch.inference_mode():
        _spec_loop(model, ids, params, drafter, num_draft_tokens, transforms, stop_ids, stops,
                   generator, out, fast, pack, prefix, on_tokens)
    out.stats.seconds = time.perf_counter() - t0
    out.stats.new_tokens = len(out.tokens)
    return out


def _spec_loop(model, ids, params, drafter, k, transforms, stop_ids, stops, generator, out,
               fast, pack=False, prefix=None, on_tokens=None):
    P = len(ids)
    target = Incremental(model, fast, pack, prefix=prefix)
    if P > 1:  # the cache holds all but the last committed token
        target.feed(ids[:-1], last_only=True)
    seq = list(ids)
    while True:
        budget = min(k, params.max_new_tokens - len(out.tokens) - 1)
        drafts, q = drafter.propose(seq, budget, transforms, P, params.greedy, generator) \
            if budget > 0 else ([], None)
        logits = target.feed([seq[-1]] + drafts)  # (g+1, V)
        p = _target_dist(logits, seq, drafts, transforms, P, params.greedy)
        n_ok, nxt = _verify(p, drafts, q, params.greedy, generator)
        out.stats.target_forwards += 1
        out.stats.proposed += len(drafts)
        out.stats.accepted += n_ok
        new = drafts[:n_ok] + [nxt]
        if _commit(out, new, logits, p, params, stop_ids, stops):
            return
        if on_tokens is not None:
            on_tokens(new)
        target.crop(len(seq) + n_ok)  # it saw seq[-1] and every draft: drop the rejected
        seq += new
        drafter.rollback(len(seq) - 1)


def _target_dist(logits, seq, drafts, transforms, P, greedy) -> torch.Tensor:
    """The target's processed distribution at each of the g+1 positions (each position's
    penalties see the drafts before it). Greedy: processed logits (argmax is all we need)."""
    if transforms:
        rows = []
        for i in range(logits.shape[0]):
            hist = History(torch.tensor([seq + drafts[:i]], device=logits.device), P)
            rows.append(apply_transforms(logits[i:i + 1], transforms, hist)[0])
        logits = torch.stack(rows)
    return logits if greedy else logits.softmax(-1)


def _commit(out: SpecOutput, new: list[int], logits, p, params, stop_ids, stops) -> bool:
    """Append the round's tokens one by one, stopping where a stop condition hits."""
    for i, tok in enumerate(new):
        out.tokens.append(tok)
        if out.logprobs is not None:
            if params.logprobs_mode == "raw":
                src = logits[i]
            else:  # p holds processed logits when greedy, probabilities when sampling
                src = p[i] if params.greedy else p[i].log()
            out.logprobs.append(float(src.log_softmax(-1)[tok]))
        if tok in stop_ids:
            out.finish_reason = "eos"
        elif stops.hit(out.tokens):
            out.finish_reason = "stop"
        elif len(out.tokens) >= params.max_new_tokens:
            out.finish_reason = "length"
        else:
            continue
        return True
    return False


# ----------------------------------------------------------------------------- text level


@dataclass
class SpecResult:
    completions: list[Completion]
    stats: SpecStats  # summed over the prompts of this call


def generate_speculative(model, tokenizer, prompts: list[Prompt],
                         params: SamplingParams | None = None, *, draft=None,
                         draft_tokenizer=None, num_draft_tokens: int = 5,
                         draft_vocab: int | None = None, prompt_lookup_max_ngram: int = 3,
                         prompt_lookup_prefer: str = "first",
                         generator: torch.Generator | None = None,
                         pack: bool | str = False, draft_bf16: bool = True,
                         reuse_prefix: bool = True,
                         on_text: Callable[[int, str, str | None], None] | None = None
                         ) -> SpecResult:
    """Speculative decoding on text or chat prompts, with ``draft`` (a model) or, when none
    is given, prompt lookup (``prompt_lookup_max_ngram`` / ``_prefer``: ``PromptLookup``'s
    ``max_ngram`` / ``prefer``). ``pack``: target and draft run oneDNN-packed weights;
    ``draft_vocab`` / ``draft_bf16``: ``DraftModel``'s ``vocab`` / ``bf16``; ``reuse_prefix``
    (with ``pack``): target and draft prefills reuse the opening tokens each prompt shares
    with the one before (``infer.prefix``), as ``generate`` does, the prompts run in
    ``reuse_order`` (completions come back in the given order). Sampled outputs depend on that
    order: each prompt draws from ``generator`` in turn. ``on_text(i, text, finish_reason)``:
    prompt ``i``'s text as it is accepted (``TextStream``'s pieces; the finish reason with the
    last piece), prompt after prompt."""
    params = params or SamplingParams()
    if draft is not None:
        check_same_vocab(model, draft, tokenizer, draft_tokenizer)
    encoded = encode_prompts(tokenizer, prompts)
    check_context(model, [len(e) for e in encoded], params.max_new_tokens)
    if generator is None and not params.greedy:
        generator = make_generator(params.seed, model_device(model))
    stops = StopStrings(tokenizer, params.stop)
    total, comps = SpecStats(), [None] * len(prompts)
    reuse = reuse_prefix and pack
    tp, dp = (LastPromptKV(), LastPromptKV()) if reuse else (None, None)
    for i in (reuse_order(encoded) if reuse else range(len(prompts))):
        prompt, ids = prompts[i], encoded[i]
        drafter = DraftModel(draft, pack=pack, vocab=draft_vocab, bf16=draft_bf16, prefix=dp) \
            if draft is not None else PromptLookup(prompt_lookup_max_ngram,
                                                   prefer=prompt_lookup_prefer)
        shown = TextStream(tokenizer, stops) if on_text is not None else None

        def show(toks: list[int], i=i, shown=shown) -> None:
            piece = shown.push(toks)
            if piece:
                on_text(i, piece, None)

        o = speculative_decode(model, torch.tensor([ids], device=model_device(model)), params,
                               drafter=drafter, num_draft_tokens=num_draft_tokens,
                               tokenizer=tokenizer, generator=generator, pack=pack, prefix=tp,
                               on_tokens=show if shown is not None else None)
        if shown is not None:
            last = o.tokens[len(shown.tokens):]  # the check that ended the output
            on_text(i, shown.finish(o.finish_reason, last), o.finish_reason)
        total.add(o.stats)
        comps[i] = Completion(prompt, completion_text(tokenizer, o.tokens, o.finish_reason,
                                                      stops), o.tokens, o.finish_reason,
                              len(ids), o.logprobs)
    return SpecResult(comps, total)
