"""Search strategies over the KV-cache loop: beam search, contrastive search, best-of-N.

Legend: A = prompts still searching, K = beams (or contrastive candidates) per prompt,
V = vocabulary, P = padded prompt width, t = tokens generated so far, C = candidates per step,
D = hidden size.

Beam search keeps K running beams per prompt and a pool of at most K finished hypotheses, with
the scoring and stopping rules of HF ``generate(num_beams=...)`` so the two give the same tokens:
a hypothesis scores ``sum(logprobs) / len ** length_penalty``; ``early_stopping=True`` stops a
prompt when K hypotheses are finished, ``False`` when the best running beam (at its current
length) cannot beat the worst finished one, ``"never"`` when it cannot at any length.

Contrastive search (Su et al. 2022, "A Contrastive Framework for Neural Text Generation"):
among the top-k next tokens pick ``argmax (1 - alpha) * p(v) - alpha * max_j cos(h_v, h_j)``,
where h_v is the candidate's last hidden state and h_j those of every earlier token.

Best-of-N samples N completions per prompt and keeps the one a reranker scores highest.

Beam and contrastive search run their decode steps through the lean ``fastpath.LlamaStep``
where the model supports it (its logits are the HF forward's, bit for bit; ``fast=False``
forces the HF forward), and ``pack=True`` gives that step oneDNN-packed weights
(``infer.packed``), as in ``decode.stream_tokens``; best-of-N passes ``pack`` to ``generate``.
A model the lean step does not support decodes through the HF forward, unpacked.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch

from lmlab.errors import UserError
from lmlab.infer.fastpath import LlamaStep, unwrap
from lmlab.infer.packed import packed_linears
from lmlab.infer.decode import Completion, Decoded, Prompt, StopStrings, check_context, \
    completion_text, eos_ids, eval_mode, generate, left_pad, encode_prompts, model_device, \
    select_cache_rows
from lmlab.infer.sampling import History, SamplingParams, apply_transforms, build_transforms
from lmlab.models.compat import with_cache

Reranker = Callable[[Prompt, str], float]  # (prompt, completion text) -> higher is better


@dataclass
class Hypothesis:
    tokens: list[int]  # generated ids (with the EOS that ended it, if any)
    score: float  # sum of token logprobs / len(tokens) ** length_penalty
    finish_reason: str  # "eos" | "length"


# ----------------------------------------------------------------------------- shared setup


def _prepare(model, input_ids, attention_mask, params: SamplingParams | None, eos_token_ids,
             tokenizer=None):
    """Validated (params as greedy, eos ids, penalty transforms, attention mask)."""
    params = dataclasses.replace(params or SamplingParams(), temperature=0)
    if params.stop:
        raise UserError("stop: stop strings are not supported by beam/contrastive search "
                        "(use max_new_tokens or stop_token_ids)")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    eos = [] if params.ignore_eos else (eos_ids(model, tokenizer) if eos_token_ids is None
                                        else list(eos_token_ids))
    eos = sorted(set(eos) | set(params.stop_token_ids))
    check_context(model, attention_mask.sum(-1).tolist(), params.max_new_tokens)
    return params, eos, build_transforms(params, eos_token_ids=eos), attention_mask


def _prefill(model, input_ids, attention_mask, max_new: int, hidden: bool = False):
    """Prefill (B, P) prompts; returns (cache, mask buffer or None, next positions (B, 1),
    outputs). The mask buffer is (B, P + max_new) with ones after the prompt."""
    from transformers import DynamicCache

    B, P = input_ids.shape
    padded = bool((attention_mask == 0).any())
    pos = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    out = model(input_ids=input_ids, attention_mask=attention_mask if padded else None,
                position_ids=pos, **with_cache(model, cache), use_cache=True,
                output_hidden_states=hidden, logits_to_keep=1)
    mask = None
    if padded:
        mask = torch.ones(B, P + max_new, dtype=attention_mask.dtype, device=input_ids.device)
        mask[:, :P] = attention_mask
    return cache, mask, pos[:, -1:] + 1, out


def _lean_step(model, cache, batch: int, length: int, fast: bool | None,
               pack: bool | str):
    """The lean decode step over an HF prefill ``cache`` (packed weights with ``pack``), or
    None when ``fast`` is False or the model is not one ``LlamaStep`` supports."""
    if fast is False or not LlamaStep.supports(model, lora=pack):
        return None
    lin = packed_linears(unwrap(model), pack) if pack else None
    return LlamaStep(model, cache, batch, length, lin=lin)


class _HeadInput:
    """A ``LlamaStep.step`` head that keeps what goes into the LM head (the final-norm hidden
    states, which the HF forward returns as ``hidden_states[-1]``) and gives the logits through
    the step's own projection (packed or not). As a head, not a wrapped ``lin``, it leaves the
    step's fast paths on (the packed layer loop, the C step of ``infer.native``)."""

    def __init__(self, step, head: torch.nn.Module):
        self.step, self.head, self.h = step, head, None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.h = x
        return self.step.lin(x, self.head)


def _step(model, cache, mask, pos, tokens, n: int, hidden: bool = False):
    """One-token forward for each row: tokens (R,), cache length after it = n."""
    return model(input_ids=tokens[:, None], attention_mask=None if mask is None else mask[:, :n],
                 position_ids=pos, **with_cache(model, cache), use_cache=True,
                 output_hidden_states=hidden)


# ----------------------------------------------------------------------------- beam search


def _check_beam_args(num_beams, length_penalty, early_stopping, num_return_sequences) -> None:
    problems = []
    if isinstance(num_beams, bool) or not isinstance(num_beams, int) or num_beams < 1:
        problems.append(f"num_beams: must be an integer >= 1, got {num_beams!r}")
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float)):
        problems.append(f"length_penalty: must be a number, got {length_penalty!r}")
    if early_stopping not in (True, False, "never"):
        problems.append(f"early_stopping: must be true, false or 'never', got {early_stopping!r}")
    if not isinstance(num_return_sequences, int) or not (
            1 <= num_return_sequences <= (num_beams if isinstance(num_beams, int) else 1)):
        problems.append(f"num_return_sequences: must be in [1, num_beams], got "
                        f"{num_return_sequences!r}")
    if problems:
        raise UserError("invalid beam search settings:\n" + "\n".join(f"  - {p}" for p in problems))


class _Pool:
    """The best <= K finished hypotheses of one prompt, and whether it may still change."""

    def __init__(self, k: int):
        self.k, self.hyps, self.open = k, [], True

    def add(self, tokens: list[int], score: float, reason: str) -> None:
        self.hyps.append(Hypothesis(tokens, score, reason))
        self.hyps.sort(key=lambda h: -h.score)
        del self.hyps[self.k:]

    @property
    def full(self) -> bool:
        return len(self.hyps) >= self.k

    def update_open(self, best_running: float, length: int, lp: float,
                    early_stopping) -> None:
        """HF's stopping rule, evaluated after each step."""
        if not self.full:
            return
        if early_stopping is True:
            self.open = False
        elif best_running / (length ** lp) <= self.hyps[-1].score:
            self.open = False


def beam_search(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                num_beams: int = 4, length_penalty: float = 1.0,
                early_stopping: bool | str = False, num_return_sequences: int = 1,
                params: SamplingParams | None = None,
                eos_token_ids: list[int] | None = None, fast: bool | None = None,
                pack: bool | str = False) -> list[list[Hypothesis]]:
    """Beam search over left-padded prompts (B, P): per prompt, the ``num_return_sequences``
    best hypotheses, best first. ``params`` gives max_new_tokens, stop token ids and the
    penalties (applied to log-probabilities, as HF does); temperature / top-k / top-p are
    ignored. ``fast`` / ``pack``: as in ``decode.stream_tokens`` (the lean step; packed
    weights)."""
    _check_beam_args(num_beams, length_penalty, early_stopping, num_return_sequences)
    params, eos, transforms, attention_mask = _prepare(model, input_ids, attention_mask, params,
                                                       eos_token_ids)
    B, P = input_ids.shape
    pools = [_Pool(num_beams) for _ in range(B)]
    if params.max_new_tokens == 0:
        return [[Hypothesis([], 0.0, "length")] for _ in range(B)]
    with eval_mode(model), torch.inference_mode():
        _beam_loop(model, input_ids, attention_mask, params, eos, transforms, pools,
                   num_beams, length_penalty, early_stopping, fast, pack)
    return [p.hyps[:num_return_sequences] for p in pools]


def _beam_loop(model, input_ids, attention_mask, params, eos, transforms, pools, K, lp,
               early_stopping, fast=None, pack=False) -> None:
    B, P = input_ids.shape
    max_new = params.max_new_tokens
    # every beam starts as a copy of its prompt: prefill K copies, as HF does (same numerics)
    ids_k, mask_k = input_ids.repeat_interleave(K, 0), attention_mask.repeat_interleave(K, 0)
    cache, mask, pos, out = _prefill(model, ids_k, mask_k, max_new)
    # the lean step: the HF forward's logits bit for bit (packed weights: up to fp32 rounding)
    cache = _lean_step(model, cache, B * K, P + max_new, fast, pack) or cache
    logits = out.logits[:, -1].float()  # (A*K, V)
    prompt_hist = ids_k.masked_fill(mask_k == 0, -1)  # (A*K, P)
    active = list(range(B))  # prompt index of each active row group
    scores = torch.full((B, K), float("-inf"), device=logits.device)
    scores[:, 0] = 0.0  # only beam 0 is real at the start (the others are copies)
    seqs = torch.empty(B, K, 0, dtype=torch.long, device=logits.device)  # (A, K, t)
    eos_t = torch.tensor(eos, dtype=torch.long, device=logits.device)
    n_cand = max(2, 1 + len(eos)) * K  # enough that K candidates survive even if all end
    for t in range(max_new):
        A, V = len(active), logits.shape[-1]
        logp = logits.log_softmax(-1)
        if transforms:
            hist = torch.cat([prompt_hist, seqs.reshape(A * K, t)], 1)
            logp = apply_transforms(logp, transforms, History(hist, P))
        total = (logp.view(A, K, V) + scores[:, :, None]).view(A, K * V)
        cand_scores, cand_idx = total.topk(n_cand, dim=-1)  # (A, C), best first
        cand_beam, cand_tok = cand_idx // V, cand_idx % V
        done = torch.isin(cand_tok, eos_t) | (t + 1 >= max_new)  # (A, C)
        _finish(pools, active, seqs, cand_scores, cand_beam, cand_tok, done, K, t, lp, eos)
        if t + 1 >= max_new:
            return
        # the K best candidates that did not finish carry on
        sel = cand_scores.masked_fill(done, float("-inf")).topk(K, dim=-1).indices  # (A, K)
        scores = cand_scores.gather(1, sel)
        beam = cand_beam.gather(1, sel)
        seqs = torch.cat([seqs.gather(1, beam[:, :, None].expand(-1, -1, t)),
                          cand_tok.gather(1, sel)[:, :, None]], 2)
        rows = (torch.arange(A, device=beam.device)[:, None] * K + beam).view(-1)  # (A*K,)
        for a, b in enumerate(active):
            pools[b].update_open(scores[a, 0].item(), t + 1 if not (
                early_stopping == "never" and lp > 0) else max_new, lp, early_stopping)
        keep = [a for a, b in enumerate(active) if pools[b].open]
        if not keep:
            return
        if len(keep) < A:  # prompts that are decided leave the batch
            k_idx = torch.tensor(keep, device=beam.device)
            rows = rows.view(A, K)[k_idx].view(-1)
            scores, seqs = scores[k_idx], seqs[k_idx]
            active = [active[a] for a in keep]
            r_keep = (k_idx[:, None] * K + torch.arange(K, device=beam.device)).view(-1)
            prompt_hist, pos = prompt_hist[r_keep], pos[r_keep]
            mask = None if mask is None else mask[r_keep]
        tokens, n = seqs[:, :, -1].reshape(-1), P + t + 1
        select_cache_rows(cache, rows)  # reorder (and shrink) the cache to the chosen beams
        if isinstance(cache, LlamaStep):
            logits = cache.step(tokens[:, None], pos, n, None if mask is None else mask[:, :n])
        else:
            logits = _step(model, cache, mask, pos, tokens, n).logits
        pos = pos + 1
        logits = logits[:, -1].float()


def _finish(pools, active, seqs, cand_scores, cand_beam, cand_tok, done, K, t, lp, eos):
    """Finished candidates among the top K of each prompt join its pool (if it is open)."""
    d = done[:, :K]
    if not bool(d.any()):
        return
    for a, c in d.nonzero().tolist():
        pool = pools[active[a]]
        if not pool.open:
            continue
        tok = int(cand_tok[a, c])
        tokens = seqs[a, int(cand_beam[a, c])].tolist() + [tok]
        pool.add(tokens, float(cand_scores[a, c]) / ((t + 1) ** lp),
                 "eos" if tok in eos else "length")


# ----------------------------------------------------------------------------- contrastive


def contrastive_search(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                       *, penalty_alpha: float = 0.6, top_k: int = 4,
                       params: SamplingParams | None = None,
                       eos_token_ids: list[int] | None = None, fast: bool | None = None,
                       pack: bool | str = False) -> Decoded:
    """Contrastive search over left-padded prompts (B, P). ``penalty_alpha=0`` is greedy.
    ``fast`` / ``pack``: as in ``decode.stream_tokens`` (the lean step; packed weights)."""
    problems = []
    if isinstance(penalty_alpha, bool) or not isinstance(penalty_alpha, (int, float)) or not (
            0 <= penalty_alpha <= 1):
        problems.append(f"penalty_alpha: must be in [0, 1], got {penalty_alpha!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        problems.append(f"top_k: must be an integer >= 1, got {top_k!r}")
    if problems:
        raise UserError("invalid contrastive search settings:\n" +
                        "\n".join(f"  - {p}" for p in problems))
    params, eos, transforms, attention_mask = _prepare(model, input_ids, attention_mask, params,
                                                       eos_token_ids)
    B = input_ids.shape[0]
    tokens: list[list[int]] = [[] for _ in range(B)]
    reasons = ["length"] * B
    if params.max_new_tokens == 0:
        return Decoded(tokens, reasons, None)
    with eval_mode(model), torch.inference_mode():
        _contrastive_loop(model, input_ids, attention_mask, params, eos, transforms,
                          penalty_alpha, top_k, tokens, reasons, fast, pack)
    return Decoded(tokens, reasons, None)


def _contrastive_loop(model, input_ids, attention_mask, params, eos, transforms, alpha, k,
                      tokens, reasons, fast=None, pack=False) -> None:
    B, P = input_ids.shape
    max_new = params.max_new_tokens
    cache, mask, pos, out = _prefill(model, input_ids, attention_mask, max_new, hidden=True)
    step = _lean_step(model, cache, B, P + max_new, fast, pack)
    head = None
    if step is not None:  # the lean step, keeping the LM head's input (the hidden states)
        head = _HeadInput(step, unwrap(model).lm_head)
        cache = step
    logits = out.logits[:, -1].float()  # (B, V)
    ctx = out.hidden_states[-1]  # (B, P, D) final-norm hidden states of the context
    ctx_ok = attention_mask.bool()  # (B, P) real tokens (padding is never "similar")
    hist = input_ids.masked_fill(attention_mask == 0, -1)
    rows = list(range(B))
    for t in range(max_new):
        R = len(rows)
        probs = apply_transforms(logits, transforms, History(hist, P)).softmax(-1)
        top_p, top_ids = probs.topk(k, dim=-1)  # (R, k)
        # run every candidate one step on its own copy of the cache
        rep = lambda x: None if x is None else x.repeat_interleave(k, 0)  # noqa: E731
        n = P + t + 1
        if step is not None:
            step.keep_rows(torch.arange(R, device=top_ids.device).repeat_interleave(k))
            m = rep(mask)
            cand_logits = step.step(top_ids.reshape(-1, 1), rep(pos), n,
                                    None if m is None else m[:, :n], head=head)  # (R*k, 1, V)
            h = head.h[:, -1].view(R, k, -1)  # (R, k, D)
        else:
            cache.batch_repeat_interleave(k)
            out = _step(model, cache, rep(mask), rep(pos), top_ids.reshape(-1), n, hidden=True)
            cand_logits, h = out.logits, out.hidden_states[-1][:, -1].view(R, k, -1)
        sim = torch.nn.functional.cosine_similarity(h[:, :, None], ctx[:, None], dim=-1)
        sim = sim.masked_fill(~ctx_ok[:, None], float("-inf")).amax(-1)  # (R, k)
        best = ((1 - alpha) * top_p - alpha * sim).argmax(-1)  # (R,)
        chosen = torch.arange(R, device=best.device) * k + best
        select_cache_rows(cache, chosen)
        tok = top_ids.gather(1, best[:, None]).squeeze(1)  # (R,)
        logits = cand_logits[chosen, -1].float()
        ctx = torch.cat([ctx, h[torch.arange(R), best][:, None]], 1)
        ctx_ok = torch.cat([ctx_ok, torch.ones(R, 1, dtype=torch.bool, device=ctx.device)], 1)
        hist = torch.cat([hist, tok[:, None]], 1)
        pos = pos + 1
        keep = []
        for j, (r, v) in enumerate(zip(rows, tok.tolist())):
            tokens[r].append(v)
            if v in eos:
                reasons[r] = "eos"
            elif t + 1 < max_new:
                keep.append(j)
        if not keep:
            return
        if len(keep) < R:
            ki = torch.tensor(keep, device=tok.device)
            select_cache_rows(cache, ki)
            logits, ctx, ctx_ok, hist, pos = logits[ki], ctx[ki], ctx_ok[ki], hist[ki], pos[ki]
            mask = None if mask is None else mask[ki]
            rows = [rows[j] for j in keep]


# ----------------------------------------------------------------------------- text level


def _text_completions(tokenizer, prompts, encoded, tokens, reasons) -> list[Completion]:
    stops = StopStrings(tokenizer, [])
    return [Completion(p, completion_text(tokenizer, t, r, stops), t, r, len(e))
            for p, e, t, r in zip(prompts, encoded, tokens, reasons)]


def generate_beam(model, tokenizer, prompts: list[Prompt], *, num_beams: int = 4,
                  length_penalty: float = 1.0, early_stopping: bool | str = False,
                  params: SamplingParams | None = None, batch_size: int = 4,
                  pack: bool | str = False) -> list[Completion]:
    """Beam search on text or chat prompts; the best hypothesis per prompt. ``pack``: packed
    weights (see ``beam_search``)."""
    encoded = encode_prompts(tokenizer, prompts)
    out: list[Completion] = []
    for s in range(0, len(encoded), batch_size):
        ids, mask = left_pad(encoded[s:s + batch_size], tokenizer.pad_token_id,
                             model_device(model))
        hyps = beam_search(model, ids, mask, num_beams=num_beams, length_penalty=length_penalty,
                           early_stopping=early_stopping, params=params,
                           eos_token_ids=eos_ids(model, tokenizer), pack=pack)
        out += _text_completions(tokenizer, prompts[s:s + batch_size],
                                 encoded[s:s + batch_size], [h[0].tokens for h in hyps],
                                 [h[0].finish_reason for h in hyps])
    return out


def generate_contrastive(model, tokenizer, prompts: list[Prompt], *, penalty_alpha: float = 0.6,
                         top_k: int = 4, params: SamplingParams | None = None,
                         batch_size: int = 8, pack: bool | str = False) -> list[Completion]:
    """Contrastive search on text or chat prompts. ``pack``: packed weights (see
    ``contrastive_search``)."""
    encoded = encode_prompts(tokenizer, prompts)
    out: list[Completion] = []
    for s in range(0, len(encoded), batch_size):
        ids, mask = left_pad(encoded[s:s + batch_size], tokenizer.pad_token_id,
                             model_device(model))
        d = contrastive_search(model, ids, mask, penalty_alpha=penalty_alpha, top_k=top_k,
                               params=params, eos_token_ids=eos_ids(model, tokenizer),
                               pack=pack)
        out += _text_completions(tokenizer, prompts[s:s + batch_size],
                                 encoded[s:s + batch_size], d.tokens, d.finish_reasons)
    return out


# ----------------------------------------------------------------------------- best-of-N


@dataclass
class BestOfN:
    best: Completion
    candidates: list[Completion]
    scores: list[float]  # reranker score of each candidate


def best_of_n(model, tokenizer, prompts: list[Prompt], n: int, reranker: Reranker,
              params: SamplingParams | None = None, *, batch_size: int = 8,
              generator: torch.Generator | None = None, pack: bool | str = False) -> list[BestOfN]:
    """Sample ``n`` completions per prompt and keep the one ``reranker(prompt, text)`` scores
    highest (ties: the earliest sample). The reranker may be a task checker (1.0 / 0.0) or a
    reward model wrapped as a callable. ``pack``: packed weights (``decode.generate``)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(f"n: must be an integer >= 1, got {n!r}")
    if not callable(reranker):
        raise UserError("reranker: must be a callable (prompt, completion) -> float")
    params = params or SamplingParams()
    # prompt-major: prompt i's n samples at i*n .. i*n+n-1, its prefill shared by the n rows
    comps = generate(model, tokenizer, prompts, params, batch_size=batch_size,
                     generator=generator, pack=pack, repeat=n)
    out = []
    for i, prompt in enumerate(prompts):
        cands = comps[i * n:(i + 1) * n]
        scores = [float(reranker(prompt, c.text)) for c in cands]
        best = max(range(n), key=lambda j: (scores[j], -j))
        out.append(BestOfN(cands[best], cands, scores))
    return out
