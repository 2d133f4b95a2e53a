"""Our KV-cache decode loop over a transformers causal LM.

Prompts are LEFT padded so every row's next token sits in the last column: one prefill forward
over (B, P), then one forward of (B, 1) per step, reusing one ``DynamicCache``. Each row stops on
its own (EOS / stop token, stop string, ``max_new_tokens``); finished rows leave the batch (their
cache rows are dropped), so a long straggler does not make the others pay.

Legend: B = rows still decoding, P = padded prompt width, t = tokens generated so far,
V = vocabulary. Position ids come from the attention mask (``cumsum - 1``), as HF ``generate``
does, so left padding changes nothing for the real tokens.

Layers, bottom up: ``stream_tokens`` (a generator of ``Step``s over token tensors) ->
``decode`` (collects them) -> ``generate`` / ``stream`` (strings and chat messages in, text
out).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from lmlab.errors import UserError
from lmlab.infer.fastpath import LlamaStep, unwrap
from lmlab.infer.packed import packed_linears
from lmlab.infer.prefix import LastPromptKV, reuse_order
from lmlab.infer.sampling import (
    History,
    SamplingParams,
    apply_transforms,
    build_transforms,
    make_generator,
    pick,
)
from lmlab.models.compat import with_cache

Prompt = str | list[dict]  # raw text, or chat messages [{role, content}]


@dataclass
class Step:
    """What one decode step produced, for the rows that were still decoding."""

    rows: list[int]  # original row index of each active row
    tokens: list[int]  # the token each of them chose
    logprobs: list[float] | None  # log-probability of each chosen token (when asked)
    finished: dict[int, str]  # row -> finish reason, for rows that finished at this step
    logits: torch.Tensor  # (B, V) raw next-token logits of the active rows (for tests/tools)


@dataclass
class Decoded:
    """Token-level result of ``decode``; per row, in input order."""

    tokens: list[list[int]]  # generated ids, including the stop token that ended the row
    finish_reasons: list[str]  # "eos" (EOS or a stop token) | "stop" (stop string) | "length"
    logprobs: list[list[float]] | None


@dataclass
class Completion:
    prompt: Prompt
    text: str  # without the stop token / stop string
    token_ids: list[int]
    finish_reason: str
    prompt_tokens: int
    logprobs: list[float] | None = None


@dataclass
class TextDelta:
    """A piece of streamed text for prompt ``index``; ``finish_reason`` set on its last piece."""

    index: int
    text: str
    finish_reason: str | None = None


# ----------------------------------------------------------------------------- inputs


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def context_length(model) -> int | None:
    cfg = model.config
    return getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)


def eos_ids(model, tokenizer=None) -> list[int]:
    """The EOS ids of the model's generation config and the tokenizer."""
    ids: set[int] = set()
    gen = getattr(model, "generation_config", None)
    for src in (getattr(gen, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(src, int):
            ids.add(src)
        elif src is not None:
            ids.update(int(i) for i in src)
    return sorted(ids)


def encode_prompts(tokenizer, prompts: list[Prompt]) -> list[list[int]]:
    """Token ids per prompt; chat prompts go through the tokenizer's chat template."""
    if isinstance(prompts, (str, dict)) or not isinstance(prompts, (list, tuple)):
        raise UserError("prompts: must be a list of strings or of chat message lists")
    out = []
    for i, p in enumerate(prompts):
        if isinstance(p, str):
            text = p
        elif isinstance(p, (list, tuple)) and all(
                isinstance(m, dict) and "role" in m and "content" in m for m in p):
            if not getattr(tokenizer, "chat_template", None):
                raise UserError(f"prompts[{i}]: chat messages need a tokenizer with a chat "
                                "template; this one has none (pass plain text)")
            text = tokenizer.apply_chat_template(list(p), tokenize=False,
                                                 add_generation_prompt=True)
        else:
            raise UserError(f"prompts[{i}]: expected a string or a list of {{role, content}} "
                            f"messages, got {type(p).__name__}")
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise UserError(f"prompts[{i}]: empty prompt")
        out.append(ids)
    return out


def left_pad(seqs: list[list[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both (B, P), real tokens right-aligned."""
    P = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), P), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), P), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, P - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, P - len(s):] = 1
    return ids.to(device), mask.to(device)


@contextlib.contextmanager
def eval_mode(model):
    """``model`` in eval mode within the block, every module's own mode restored after. No work
    when no module is training: ``eval()`` / ``train()`` walk every module through
    ``Module.__setattr__`` (~1 ms each on SmolLM2, paid per prompt by batch-1 loops)."""
    modes = [(m, m.training) for m in model.modules()]
    if not any(t for _, t in modes):
        yield model
        return
    model.eval()
    try:
        yield model
    finally:
        for m, t in modes:
            m.training = t


def check_context(model, prompt_lengths: list[int], max_new_tokens: int,
                  where: list[str] | None = None) -> None:
    """Raise before any work when a prompt plus its new tokens cannot fit the context;
    ``where`` names each prompt's origin (``file:line``) in the message."""
    ctx = context_length(model)
    if ctx is None:
        return
    for i, n in enumerate(prompt_lengths):
        if n + max_new_tokens > ctx:
            name = f"{where[i]}: the prompt" if where else f"prompts[{i}]"
            raise UserError(f"{name} has {n} tokens; with max_new_tokens={max_new_tokens} "
                            f"that exceeds the model's context of {ctx} tokens (shorten the "
                            f"prompt or lower max_new_tokens)")


# ----------------------------------------------------------------------------- stop strings


class StopStrings:
    """Detects stop strings in each row's decoded text (they may span tokens)."""

    def __init__(self, tokenizer, stops: list[str]):
        if stops and tokenizer is None:
            raise UserError("stop: stop strings need a tokenizer to read the text")
        self.tokenizer, self.stops = tokenizer, list(stops)

    def hit(self, ids: list[int]) -> bool:
        if not self.stops:
            return False
        text = self.tokenizer.decode(ids)
        return any(s in text for s in self.stops)

    def cut(self, text: str) -> str:
        """``text`` up to the earliest stop string."""
        at = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        return text[:min(at)] if at else text


# ----------------------------------------------------------------------------- the loop


@dataclass
class _State:
    """Tensors of the rows still decoding (first dim B) and per-row results (by row index)."""

    cache: object
    mask: torch.Tensor | None  # (B, P + max_new) 1 = real token; None when there is no padding
    pos: torch.Tensor  # (B, 1) position id of the next token
    hist: torch.Tensor  # (B, P + max_new) token ids, -1 at padding / not yet generated
    rows: list[int]  # original index of each active row
    t: int = 0  # tokens generated so far by the active rows
    fast: object = None  # a fastpath.LlamaStep when the lean decode step is in use
    out: list[list[int]] = field(default_factory=list)
    lps: list[list[float]] = field(default_factory=list)


def _prefill(model, input_ids, attention_mask, max_new: int) -> tuple[_State, torch.Tensor]:
    from transformers import DynamicCache

    padded = bool((attention_mask == 0).any())
    pos = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (B, P)
    cache = DynamicCache(config=model.config)
    logits = model(input_ids=input_ids, attention_mask=attention_mask if padded else None,
                   position_ids=pos, **with_cache(model, cache), use_cache=True,
                   logits_to_keep=1).logits[:, -1, :]  # (B, V)
    return _start(input_ids, attention_mask, pos, padded, max_new, cache=cache), logits.float()


def _prefill_lean(model, input_ids, attention_mask, max_new: int,
                  lin, prefix: LastPromptKV | None = None) -> tuple[_State, torch.Tensor]:
    """The prefill through ``LlamaStep`` itself (the first step writes the prompt into its
    buffers; only the last position goes through the LM head): no HF forward, no cache copy.
    ``prefix``: one unpadded row reuses the opening tokens it shares with the last prompt."""
    B, P = input_ids.shape
    padded = bool((attention_mask == 0).any())
    pos = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (B, P)
    fast = LlamaStep(model, None, B, P + max_new, lin=lin)
    if prefix is not None and B == 1 and not padded:
        logits = prefix.prefill(fast, input_ids[0].tolist())[:, -1]
    else:
        logits = fast.step(input_ids, pos, P, attention_mask if padded else None,
                           last_only=True)[:, -1]
    return _start(input_ids, attention_mask, pos, padded, max_new, fast=fast), logits.float()


def _start(input_ids, attention_mask, pos, padded: bool, max_new: int, *, cache=None,
           fast=None) -> _State:
    """The decode state right after a prefill (either kind)."""
    B, P = input_ids.shape
    mask = None
    if padded:
        mask = torch.ones(B, P + max_new, dtype=attention_mask.dtype, device=input_ids.device)
        mask[:, :P] = attention_mask
    hist = torch.full((B, P + max_new), -1, dtype=torch.long, device=input_ids.device)
    hist[:, :P] = input_ids.masked_fill(attention_mask == 0, -1)
    return _State(cache, mask, pos[:, -1:] + 1, hist, list(range(B)), fast=fast,
                  out=[[] for _ in range(B)], lps=[[] for _ in range(B)])


def _repeat_rows(st: _State, logits: torch.Tensor, k: int) -> torch.Tensor:
    """Each row becomes k consecutive rows (row r -> rows r*k .. r*k+k-1) sharing its prefill."""
    B = len(st.rows)
    idx = torch.arange(B, device=st.pos.device).repeat_interleave(k)
    _index_rows(st, idx)
    st.rows = list(range(B * k))
    st.out, st.lps = [[] for _ in range(B * k)], [[] for _ in range(B * k)]
    return logits[idx]


def _forward_one(model, st: _State, tokens: torch.Tensor, P: int) -> torch.Tensor:
    """Feed each active row its last token (B,); the next-token logits (B, V)."""
    n = P + st.t  # cache length after this token
    mask = st.mask[:, :n] if st.mask is not None else None
    if st.fast is not None:
        logits = st.fast.step(tokens[:, None], st.pos, n, mask)[:, -1]
        st.pos += 1
        return logits if logits.dtype == torch.float32 else logits.float()
    logits = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=st.pos,
                   **with_cache(model, st.cache), use_cache=True).logits[:, -1, :]
    st.pos += 1
    return logits.float()


def _keep_rows(st: _State, keep: list[int]) -> None:
    """Drop finished rows: ``keep`` are positions in the current batch."""
    _index_rows(st, torch.tensor(keep, dtype=torch.long, device=st.pos.device))
    st.rows = [st.rows[j] for j in keep]


def select_cache_rows(cache, rows: torch.Tensor) -> None:
    """Keep (reorder, repeat) the rows of a ``LlamaStep``'s buffers or of a ``DynamicCache``."""
    if isinstance(cache, LlamaStep):
        cache.keep_rows(rows)
    else:
        cache.batch_select_indices(rows)


def _index_rows(st: _State, idx: torch.Tensor) -> None:
    """The tensors (cache included) of rows ``idx`` of the current batch; an index may repeat."""
    select_cache_rows(st.fast if st.fast is not None else st.cache, idx)
    st.pos, st.hist = st.pos[idx], st.hist[idx]
    if st.mask is not None:
        st.mask = st.mask[idx]


def stream_tokens(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                  params: SamplingParams, *, eos_token_ids: list[int] | None = None,
                  tokenizer=None, generator: torch.Generator | None = None,
                  fast: bool | None = None, pack: bool | str = False,
                  repeat: int = 1, prefix: LastPromptKV | None = None,
                  burst: int = 1) -> Iterator[Step]:
    """Decode left-padded prompts (B, P), yielding one ``Step`` per generated position.

    ``eos_token_ids`` default to the model's and tokenizer's EOS; ``params.stop_token_ids`` are
    added, and ``params.ignore_eos`` drops the defaults. Stop strings need ``tokenizer``.
    ``fast``: decode steps through ``fastpath.LlamaStep`` (None = whenever the model supports
    it; False = always the HF forward). ``pack``: the lean step runs oneDNN-packed fp32
    weights (``infer.packed``, kept on the model, faster small batches on a CPU, equal up to
    fp32 rounding) and also serves peft LoRA models (the RL rollouts use this); the prefill
    then runs through the lean step too. ``pack`` = "bf16" / "int8" (``infer.precision``): the
    same, over weights rounded to that precision (True = "fp32"). ``repeat``: decode k = ``repeat`` rows per prompt (rows
    b*k .. b*k+k-1 for prompt b; ``Step.rows`` count B*k rows), the prompt prefilled once and its
    cache copied k times (GRPO's k samples per prompt, best-of-N). ``prefix``: with ``pack``, a
    batch of one unpadded prompt reuses the keys/values of the opening tokens it shares with the
    prompt before it (``infer.prefix``). ``burst``: with the C step (``pack``), plain greedy
    decoding of one row (no transforms, logprobs or stop strings) runs up to ``burst`` tokens
    per call into C, with no Python between them (``_greedy_run``); their ``Step``s come after
    each run, so a consumer streaming to a screen keeps the default 1.
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    B, P = input_ids.shape
    if repeat < 1:
        raise UserError(f"repeat: must be >= 1, got {repeat}")
    stops = StopStrings(tokenizer, params.stop)
    eos = [] if params.ignore_eos else (eos_ids(model, tokenizer) if eos_token_ids is None
                                        else list(eos_token_ids))
    stop_ids = set(eos) | set(params.stop_token_ids)
    check_context(model, attention_mask.sum(-1).tolist(), params.max_new_tokens)
    if params.max_new_tokens == 0:
        return
    transforms = build_transforms(params, eos_token_ids=sorted(stop_ids))
    if generator is None and not params.greedy:
        generator = make_generator(params.seed, input_ids.device)
    with eval_mode(model):
        with torch.inference_mode():
            lean = fast is not False and LlamaStep.supports(model, lora=pack)
            if lean and pack:
                st, logits = _prefill_lean(model, input_ids, attention_mask,
                                           params.max_new_tokens,
                                           packed_linears(unwrap(model), pack),
                                           prefix)
            else:
                st, logits = _prefill(model, input_ids, attention_mask, params.max_new_tokens)
                if lean:
                    st.fast = LlamaStep(model, st.cache, B, P + params.max_new_tokens)
                    st.cache = None  # the buffers hold it now
            if repeat > 1:
                logits = _repeat_rows(st, logits, repeat)
        with torch.inference_mode():
            done = [_choose(st, logits, params, transforms, generator, stop_ids, stops, P)]
        run = burst > 1 and params.greedy and not transforms and not params.logprobs and \
            not stops.stops
        while True:
            for step, keep, nxt in done:
                yield step  # (outside inference mode: the caller's code runs as it would)
            if not keep:
                return
            with torch.inference_mode():  # one block per token (entering costs ~25 us cold)
                if len(keep) < len(st.rows):
                    _keep_rows(st, keep)
                    nxt = nxt[torch.tensor(keep, device=nxt.device)]
                done = _greedy_run(st, nxt, params, stop_ids, P, burst) if run else None
                if done is None:
                    logits = _forward_one(model, st, nxt, P)
                    done = [_choose(st, logits, params, transforms, generator, stop_ids,
                                    stops, P)]


def _greedy_run(st: _State, nxt, params, stop_ids, P: int, burst: int) -> list | None:
    """Up to ``burst`` greedy tokens of the one active, unpadded row through the C step in
    one call (``fastpath.LlamaStep.greedy``), recorded as ``_choose`` records them: a list of
    (Step, keep, next input) per token (the next input None but for the last, the only one
    read), or None when this step cannot run that way."""
    if st.fast is None or st.mask is not None or len(st.rows) != 1:
        return None
    steps = min(burst, params.max_new_tokens - st.t)
    got = st.fast.greedy(int(nxt[0]), int(st.pos[0, 0]), P + st.t, steps, stop_ids)
    if got is None:
        return None
    toks, logits = got
    r, done = st.rows[0], []
    st.hist[0, P + st.t:P + st.t + len(toks)] = torch.tensor(toks)
    st.pos += len(toks)
    for i, tok in enumerate(toks):
        st.t += 1
        st.out[r].append(tok)
        finished = {r: "eos"} if tok in stop_ids else \
            {r: "length"} if st.t >= params.max_new_tokens else {}
        # (the next input: read only after the run's last token; a tensor a token had cost
        # ~25 us of Python, 2026-12-07)
        done.append((Step([r], [tok], None, finished, logits[i:i + 1]),
                     [] if finished else [0], None))
    if done:
        done[-1] = done[-1][:2] + (torch.tensor([toks[-1]]),)
    return done


def _choose(st: _State, logits, params, transforms, generator, stop_ids, stops, P):
    """Pick each active row's token, record it, decide who finished."""
    history = History(st.hist[:, :P + st.t], P)
    processed = apply_transforms(logits, transforms, history) if transforms else logits
    nxt = pick(processed, params.greedy, generator)  # (B,)
    lp = None
    if params.logprobs:
        src = logits if params.logprobs_mode == "raw" else processed
        lp = src.log_softmax(-1).gather(-1, nxt[:, None]).squeeze(-1).tolist()
    st.hist[:, P + st.t] = nxt
    st.t += 1
    toks = nxt.tolist()
    finished, keep = {}, []
    for j, (r, tok) in enumerate(zip(st.rows, toks)):
        st.out[r].append(tok)
        if lp is not None:
            st.lps[r].append(lp[j])
        if tok in stop_ids:
            finished[r] = "eos"
        elif stops.hit(st.out[r]):
            finished[r] = "stop"
        elif st.t >= params.max_new_tokens:
            finished[r] = "length"
        else:
            keep.append(j)
    return Step(list(st.rows), toks, lp, finished, logits), keep, nxt


def decode(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
           params: SamplingParams, **kw) -> Decoded:
    """Run ``stream_tokens`` to the end; per-row tokens, finish reasons, logprobs."""
    B = input_ids.shape[0] * kw.get("repeat", 1)
    tokens: list[list[int]] = [[] for _ in range(B)]
    lps: list[list[float]] = [[] for _ in range(B)]
    reasons = ["length"] * B
    kw.setdefault("burst", 64)  # nothing reads the steps until the end
    for step in stream_tokens(model, input_ids, attention_mask, params, **kw):
        for j, r in enumerate(step.rows):
            tokens[r].append(step.tokens[j])
            if step.logprobs is not None:
                lps[r].append(step.logprobs[j])
        for r, why in step.finished.items():
            reasons[r] = why
    return Decoded(tokens, reasons, lps if params.logprobs else None)


# ----------------------------------------------------------------------------- text in, text out


def completion_text(tokenizer, ids: list[int], reason: str, stops: StopStrings) -> str:
    if reason == "eos":
        ids = ids[:-1]
    text = tokenizer.decode(ids, skip_special_tokens=False)
    return stops.cut(text) if reason == "stop" else text


class TextStream:
    """One completion's text as its tokens arrive: ``push`` gives the new text that is safe to
    show, holding back what might be the start of a stop string or half of a multi-byte
    character; ``finish`` gives the rest, so that the pieces join to ``completion_text``."""

    def __init__(self, tokenizer, stops: StopStrings):
        self.tokenizer, self.stops = tokenizer, stops
        self.hold = max((len(s) for s in stops.stops), default=1) - 1
        self.tokens: list[int] = []
        self.sent = 0

    def push(self, tokens: list[int]) -> str:
        self.tokens += tokens
        text = self.tokenizer.decode(self.tokens)
        end = len(text) - self.hold
        if text.endswith("\ufffd"):  # an unfinished multi-byte character
            end = min(end, len(text) - 1)
        if end <= self.sent:
            return ""
        piece, self.sent = text[self.sent:end], end
        return piece

    def finish(self, reason: str, last: list[int] = ()) -> str:
        """The rest of the text, once ``last`` is added: the tokens that ended it, not pushed
        (an EOS, a stop string's last token, a speculative check's tokens)."""
        self.tokens += last
        return completion_text(self.tokenizer, self.tokens, reason, self.stops)[self.sent:]


def generate(model, tokenizer, prompts: list[Prompt], params: SamplingParams | None = None, *,
             batch_size: int = 8, generator: torch.Generator | None = None,
             fast: bool | None = None, pack: bool | str = False, repeat: int = 1,
             reuse_prefix: bool = True) -> list[Completion]:
    """Complete each prompt (text, or chat messages -> chat template). Prompts are batched by
    length (less padding); results come back in input order. ``pack``: see ``stream_tokens``.
    ``repeat``: k completions per prompt, prompt-major (prompt i's are i*k .. i*k+k-1), each
    prompt prefilled once for its k rows; a batch holds ``batch_size // k`` prompts (at least
    one). ``reuse_prefix`` (with ``pack``, one prompt per batch): each prompt reuses the
    keys/values of the opening tokens it shares with the one before (``infer.prefix``)."""
    params = params or SamplingParams()
    if batch_size < 1:
        raise UserError(f"batch_size: must be >= 1, got {batch_size}")
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise UserError(f"repeat: must be an integer >= 1, got {repeat!r}")
    encoded = encode_prompts(tokenizer, prompts)
    check_context(model, [len(e) for e in encoded], params.max_new_tokens)
    if generator is None and not params.greedy:
        generator = make_generator(params.seed, model_device(model))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids(model,
                                                                                    tokenizer)[0]
    stops = StopStrings(tokenizer, params.stop)
    out: list[Completion | None] = [None] * (len(encoded) * repeat)
    per = max(1, batch_size // repeat)
    prefix = LastPromptKV() if reuse_prefix and pack and per == 1 else None
    # one prompt at a time with prefix reuse: prompts opening alike together; else by length
    # (less padding per batch)
    order = reuse_order(encoded) if prefix is not None else \
        sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    for s in range(0, len(order), per):
        idx = order[s:s + per]
        ids, mask = left_pad([encoded[i] for i in idx], pad, model_device(model))
        d = decode(model, ids, mask, params, tokenizer=tokenizer, generator=generator, fast=fast,
                   pack=pack, repeat=repeat, prefix=prefix)
        for j, (i, r) in enumerate((i, r) for i in idx for r in range(repeat)):
            text = completion_text(tokenizer, d.tokens[j], d.finish_reasons[j], stops)
            out[i * repeat + r] = Completion(prompts[i], text, d.tokens[j], d.finish_reasons[j],
                                             len(encoded[i]), d.logprobs[j] if d.logprobs else
                                             None)
    return out  # type: ignore[return-value]


def stream(model, tokenizer, prompts: list[Prompt], params: SamplingParams | None = None, *,
           generator: torch.Generator | None = None, pack: bool | str = False) -> Iterator[TextDelta]:
    """Yield text as it is generated (all prompts in one batch). Text that might be the start
    of a stop string, or half of a multi-byte character, is held back until it is resolved.
    ``pack``: see ``stream_tokens``."""
    params = params or SamplingParams()
    encoded = encode_prompts(tokenizer, prompts)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids(model,
                                                                                    tokenizer)[0]
    ids, mask = left_pad(encoded, pad, model_device(model))
    stops = StopStrings(tokenizer, params.stop)
    texts = [TextStream(tokenizer, stops) for _ in encoded]
    for step in stream_tokens(model, ids, mask, params, tokenizer=tokenizer, generator=generator,
                              pack=pack):
        for j, r in enumerate(step.rows):
            why = step.finished.get(r)
            if why is None:
                piece = texts[r].push([step.tokens[j]])
                if piece:
                    yield TextDelta(r, piece)
            else:
                yield TextDelta(r, texts[r].finish(why, [step.tokens[j]]), why)
