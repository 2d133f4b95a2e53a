"""Executes one scheduled step on the model: prefill the new sequences, decode the running ones.

Every scheduled sequence gets exactly one new token per step. Sampling is per sequence (its own
``SamplingParams``, transforms and seeded generator, from ``lmlab.infer.sampling``), and so are
the stop rules of ``lmlab.infer.decode`` (EOS / stop tokens -> "eos", stop strings -> "stop");
``max_tokens`` and the context limit are the scheduler's.

KV storage. Sequences of a continuous batch have different lengths and join at any step, so the
left-padded common-column layout of ``decode.stream_tokens`` does not fit. ``SlotKV`` gives each
running sequence a row ("slot") of per-layer buffers (R, Hkv, T, Dh); row b holds its tokens at
columns 0 .. len_b - 1 (no padding in front: the position of a token is its column). A decode
step writes each row's new key/value at its own column and attends over columns 0 .. max len
with a per-row mask. Rows stay packed (0 .. B-1, a finished row is filled by the last one) so
the step works on views, not gathered copies. The layer arithmetic is ``fastpath.LlamaStep``'s
(same RMSNorm, RoPE and packed-GQA SDPA); with packed weights, decode steps of up to
``native.MAX_ROWS`` rows run the C step (``infer.native``) instead. The new sequences of a step
are prefilled together, right padded, into rows behind the running ones, each starting after
its longest cached prompt prefix (``PrefixCache``: chat prompts share the template's first
tokens).

Models ``LlamaStep`` does not support (other architectures, peft) fall back to ``PerSeqKV``:
one HF ``DynamicCache`` per sequence and one forward per sequence per step - correct, not
batched.

Legend: B running rows, R row capacity, T column capacity, n attended columns, V vocabulary.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from lmlab.infer import native
from lmlab.infer.decode import StopStrings, eos_ids
from lmlab.infer.fastpath import LlamaStep, _rms_norm, _rotate_half
from lmlab.infer.packed import PackedLinears, packed_linears
from lmlab.infer.sampling import History, SamplingParams, apply_transforms, build_transforms, \
    make_generator, pick
from lmlab.models.compat import with_cache
from lmlab.serve.scheduler import Batch, Sequence


@dataclass
class SeqState:
    """The runner's per-sequence state (``Sequence.data``)."""

    params: SamplingParams
    generator: torch.Generator | None
    transforms: list
    stops: StopStrings
    stop_ids: set[int]
    top_logprobs: int = 0  # also return this many alternatives per token (logprobs on)


@dataclass
class StepOutput:
    tokens: dict[str, int] = field(default_factory=dict)
    stopped: dict[str, str] = field(default_factory=dict)  # seq_id -> "eos" | "stop"
    # seq_id -> (logprob of the chosen token, [(token, logprob)] of the top alternatives)
    logprobs: dict[str, tuple[float, list[tuple[int, float]]]] = field(default_factory=dict)


class Runner:
    def __init__(self, model, tokenizer, *, fast: bool | None = None,
                 prefix_cache_tokens: int = 0, pack_weights: bool = True,
                 decode_weights: str = "fp32", kv=None):
        if kv is not None:  # a forward that keeps its own cache (llama.cpp: infer/llamacpp.py)
            self.model, self.tokenizer, self.kv = model, tokenizer, kv
            self.device, self.eos = torch.device("cpu"), eos_ids(model, tokenizer)
            return
        self.model, self.tokenizer = model.eval(), tokenizer
        self.device = next(model.parameters()).device
        self.eos = eos_ids(model, tokenizer)
        use_slots = fast is not False and LlamaStep.supports(model)
        self.kv = SlotKV(model, prefix_cache_tokens, pack_weights, decode_weights) \
            if use_slots else \
            PerSeqKV(model)

    def new_state(self, params: SamplingParams, top_logprobs: int = 0) -> SeqState:
        stop_ids = set() if params.ignore_eos else set(self.eos)
        stop_ids |= set(params.stop_token_ids)
        gen = None if params.greedy else make_generator(params.seed, self.device)
        return SeqState(params, gen, build_transforms(params, eos_token_ids=sorted(stop_ids)),
                        StopStrings(self.tokenizer, params.stop), stop_ids, top_logprobs)

    @torch.no_grad()
    def release(self, seq: Sequence) -> None:
        """Free the cache of a finished, aborted or preempted sequence."""
        self.kv.release(seq.seq_id)

    @torch.no_grad()  # not inference_mode: the KV buffers outlive the step and are edited later
    def execute(self, batch: Batch) -> StepOutput:
        for s in batch.preempted:
            self.release(s)
        seqs, rows = [], []
        if batch.decode:
            rows.append(self.kv.decode([s.seq_id for s in batch.decode],
                                       [s.output_ids[-1] for s in batch.decode]))
            seqs += batch.decode
        if batch.prefill:  # after decode: new rows are appended behind the running ones
            rows.append(self.kv.prefill([s.seq_id for s in batch.prefill],
                                        [s.all_ids for s in batch.prefill]))
            seqs += batch.prefill
        out = StepOutput()
        if seqs:
            logits = rows[0] if len(rows) == 1 else torch.cat(rows)
            self._choose(seqs, logits.float(), out)  # (B, V)
        return out

    def _choose(self, seqs: list[Sequence], logits: torch.Tensor, out: StepOutput) -> None:
        """One token per sequence; plain greedy rows share one argmax."""
        plain = [j for j, s in enumerate(seqs) if s.data.params.greedy and not
                 s.data.transforms and not s.data.params.logprobs]
        picked = {}
        if plain:  # (no gather when every row is plain greedy)
            sub = logits if len(plain) == len(seqs) else logits[plain]
            picked = dict(zip(plain, sub.argmax(-1).tolist()))
        for j, s in enumerate(seqs):
            st: SeqState = s.data
            if j not in picked:
                row = logits[j:j + 1]  # (1, V)
                if st.transforms:
                    hist = History(torch.tensor([s.all_ids], device=row.device),
                                   len(s.prompt_ids))
                    row = apply_transforms(row, st.transforms, hist)
                picked[j] = int(pick(row, st.params.greedy, st.generator)[0])
                if st.params.logprobs:
                    src = logits[j] if st.params.logprobs_mode == "raw" else row[0]
                    out.logprobs[s.seq_id] = _logprobs(src, picked[j], st.top_logprobs)
            tok = out.tokens[s.seq_id] = picked[j]
            if tok in st.stop_ids:
                out.stopped[s.seq_id] = "eos"
            elif st.stops.stops and st.stops.hit(s.output_ids + [tok]):
                out.stopped[s.seq_id] = "stop"


def _logprobs(logits: torch.Tensor, tok: int, k: int) -> tuple[float, list[tuple[int, float]]]:
    lp = logits.float().log_softmax(-1)  # (V,)
    top = []
    if k:
        v, i = lp.topk(k)
        top = list(zip(i.tolist(), v.tolist()))
    return float(lp[tok]), top


def _hf_prefill(model, ids: list[int]):
    """One sequence through the HF forward: (its DynamicCache, next-token logits (1, V))."""
    from transformers import DynamicCache

    x = torch.tensor([ids], device=next(model.parameters()).device)
    cache = DynamicCache(config=model.config)
    pos = torch.arange(len(ids), device=x.device)[None]
    logits = model(input_ids=x, position_ids=pos, **with_cache(model, cache), use_cache=True,
                   logits_to_keep=1).logits[:, -1]
    return cache, logits


class PerSeqKV:
    """Any causal LM: one DynamicCache per sequence, one forward each per step."""

    def __init__(self, model):
        self.model = model
        self.caches: dict[str, tuple[object, int]] = {}  # seq_id -> (cache, tokens in it)

    def prefill(self, sids: list[str], seqs: list[list[int]]) -> torch.Tensor:
        rows = []
        for sid, ids in zip(sids, seqs):
            cache, logits = _hf_prefill(self.model, ids)
            self.caches[sid] = (cache, len(ids))
            rows.append(logits)
        return torch.cat(rows)

    def decode(self, sids: list[str], tokens: list[int]) -> torch.Tensor:
        rows = []
        for sid, tok in zip(sids, tokens):
            cache, n = self.caches[sid]
            x = torch.tensor([[tok]], device=next(self.model.parameters()).device)
            rows.append(self.model(input_ids=x, position_ids=torch.tensor([[n]]).to(x.device),
                                   **with_cache(self.model, cache), use_cache=True).logits[:, -1])
            self.caches[sid] = (cache, n + 1)
        return torch.cat(rows)

    def release(self, sid: str) -> None:
        self.caches.pop(sid, None)


class SlotKV:
    """Packed per-sequence rows of preallocated KV buffers (see the module docstring)."""

    def __init__(self, model, prefix_cache_tokens: int = 0, pack_weights: bool = True,
                 decode_weights: str = "fp32"):
        self.model = model
        # fp32 CPU: oneDNN-packed projections, the model's own copy (shared with `decode`),
        # rounded to decode_weights (infer.precision), which the C step reads too
        self.lin = packed_linears(model, decode_weights) if pack_weights else \
            PackedLinears(False)
        # served weights do not change: each packed copy is checked once, then reused
        self.pinned = self.lin.pinned()
        self.prefix = PrefixCache(prefix_cache_tokens // PrefixCache.BLOCK)
        self.step = LlamaStep(model, None, 0, 0)  # its constants and attention; no buffers
        # decode steps of up to native.MAX_ROWS rows through the C step (packed mode only: the
        # mode that already trades bit-for-bit equality for speed)
        self.native = native.step_for(model, self.step, self.lin.weights) if pack_weights \
            else None
        self.L = model.config.num_hidden_layers
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []
        self.order: list[str] = []  # seq_id of each packed row
        self.lens: list[int] = []  # tokens cached per row
        self._alloc(4, 64)

    def _alloc(self, rows: int, cols: int) -> None:
        p = next(self.model.parameters())
        old_k, old_v = self.k, self.v
        shape = (rows, self.step.Hkv, cols, self.step.Dh)
        self.k = [torch.zeros(shape, dtype=p.dtype, device=p.device) for _ in range(self.L)]
        self.v = [torch.zeros(shape, dtype=p.dtype, device=p.device) for _ in range(self.L)]
        if old_k:
            r, c = min(rows, old_k[0].shape[0]), min(cols, old_k[0].shape[2])
            for new, old in zip(self.k + self.v, old_k + old_v):
                new[:r, :, :c] = old[:r, :, :c]

    def _ensure(self, rows: int, cols: int) -> None:
        R, T = self.k[0].shape[0], self.k[0].shape[2]
        if rows > R or cols > T:
            self._alloc(max(rows, 2 * R) if rows > R else R, max(cols, 2 * T) if cols > T else T)

    def prefill(self, sids: list[str], seqs: list[list[int]]) -> torch.Tensor:
        """New sequences into new rows behind the running ones; next-token logits (b, V).
        Row j starts with the KV of its longest cached prefix (p_j tokens, whole blocks);
        the rest of each prompt goes through the model as one right-padded block, at
        positions p_j .. (a real token only sees earlier, real, tokens; what padding writes
        past a row's end is never attended and is overwritten by its next tokens)."""
        b, r0 = len(seqs), len(self.order)
        hits = [self.prefix.lookup(ids) for ids in seqs]
        starts = [h[0] for h in hits]
        L = max(len(ids) - p for ids, p in zip(seqs, starts))
        n = max(starts) + L
        self._ensure(r0 + b, n + 1)
        dev = self.k[0].device
        tok = torch.zeros(b, L, dtype=torch.long)
        for j, (ids, (p, kv)) in enumerate(zip(seqs, hits)):
            tok[j, :len(ids) - p] = torch.tensor(ids[p:])
            for i, (k, v) in enumerate(kv):  # the cached prefix, (Hkv, p, Dh) per layer
                self.k[i][r0 + j, :, :p], self.v[i][r0 + j, :, :p] = k, v
        pos = (torch.tensor(starts)[:, None] + torch.arange(L)[None]).to(dev)  # (b, L)
        last = torch.tensor([len(x) - p - 1 for x, p in zip(seqs, starts)], device=dev)
        logits = self._forward(tok.to(dev), pos, r0, n, last=last)
        for j, ids in enumerate(seqs):
            self.prefix.insert(ids, [(k[r0 + j], v[r0 + j]) for k, v in zip(self.k, self.v)])
        self.order += sids
        self.lens += [len(x) for x in seqs]
        return logits

    def release(self, sid: str) -> None:
        if sid not in self.order:
            return
        r, last = self.order.index(sid), len(self.order) - 1
        if r != last:  # keep the rows packed: move the last row into the hole
            n = self.lens[last]
            for buf in self.k + self.v:
                buf[r, :, :n] = buf[last, :, :n]
            self.order[r], self.lens[r] = self.order[last], self.lens[last]
        self.order.pop()
        self.lens.pop()

    def decode(self, sids: list[str], tokens: list[int]) -> torch.Tensor:
        """Feed each sequence its last token; next-token logits (B, V) in ``sids`` order."""
        rows = [self.order.index(s) for s in sids]
        self._ensure(len(self.order), max(self.lens[r] for r in rows) + 1)
        B = len(self.order)
        tok = torch.zeros(B, dtype=torch.long)
        tok[rows] = torch.tensor(tokens)
        dev = self.k[0].device
        lens = torch.tensor(self.lens, device=dev)  # (B,) = column (and position) of the token
        if self.native is not None and B <= native.MAX_ROWS:
            logits = self.native.step(self.k, self.v, tok[:, None], lens[:, None],
                                      int(lens.max()) + 1, None, False, False, cols=lens)[:, -1]
        else:
            logits = self._forward(tok.to(dev)[:, None], lens[:, None], 0, int(lens.max()) + 1)
        for r in rows:
            self.lens[r] += 1
        if rows == list(range(B)):  # the usual case: every row decodes, in row order
            return logits
        # rows not scheduled this step (none, with our engine) are computed and not advanced
        return logits[rows]

    def _forward(self, tok: torch.Tensor, pos: torch.Tensor, r0: int, n: int,
                 last: torch.Tensor | None = None) -> torch.Tensor:
        """tok (b, L) at positions pos (b, L) for rows r0 .. r0+b-1 -> logits (b, V) at
        block index ``last`` (b,) (default: the only one). A token's key/value go to the
        column equal to its position, and it attends to columns <= its position, of the first
        n. The layer loop of ``LlamaStep.step``, with per-row write columns and masks."""
        st, m, lin = self.step, self.model.model, self.pinned
        (b, L), H, Hkv, Dh = tok.shape, st.H, st.Hkv, st.Dh
        rows = torch.arange(r0, r0 + b, device=tok.device)[:, None]  # (b, 1)
        mask = (torch.arange(n, device=tok.device) <= pos[..., None])[:, None]  # (b, 1, L, n)
        x = m.embed_tokens(tok)  # (b, L, D)
        cos, sin = st._rope(pos, x.dtype)  # (b, 1, L, Dh)
        for i, layer in enumerate(m.layers):
            a, mlp = layer.self_attn, layer.mlp
            h = _rms_norm(x, layer.input_layernorm.weight, st.eps)
            qkv = lin.fused(h, (a.q_proj, a.k_proj, a.v_proj))  # one product when packed
            if qkv is None:
                q, k, v = lin(h, a.q_proj), lin(h, a.k_proj), lin(h, a.v_proj)
            else:
                q, k, v = qkv.split([H * Dh, Hkv * Dh, Hkv * Dh], dim=-1)
            q = q.reshape(b, L, H, Dh).transpose(1, 2)  # (b, H, L, Dh)
            k = k.reshape(b, L, Hkv, Dh).transpose(1, 2)
            v = v.reshape(b, L, Hkv, Dh).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            self.k[i][rows, :, pos] = k.transpose(1, 2)  # (b, L, Hkv, Dh) at their columns
            self.v[i][rows, :, pos] = v.transpose(1, 2)
            o = st._attend(q, self.k[i][r0:r0 + b, :, :n], self.v[i][r0:r0 + b, :, :n], mask)
            o = o.transpose(1, 2).reshape(b, L, -1)
            x = x + lin(o, a.o_proj)
            h = _rms_norm(x, layer.post_attention_layernorm.weight, st.eps)
            gu = lin.fused(h, (mlp.gate_proj, mlp.up_proj))
            g, u = (lin(h, mlp.gate_proj), lin(h, mlp.up_proj)) if gu is None else gu.chunk(2, -1)
            x = x + lin(F.silu(g) * u, mlp.down_proj)
        x = x[:, -1] if last is None else x[torch.arange(b, device=x.device), last]  # (b, D)
        x = _rms_norm(x, m.norm.weight, st.eps)
        return lin(x, self.model.lm_head)  # (b, V)


class PrefixCache:
    """KV of prompt prefixes, by whole blocks, least recently used dropped first.

    Chat requests share their first tokens (the template's system prompt and turn markers:
    ~30 of SmolLM2's ~40-token prompts), so their prefill can start after them. Block i of a
    prompt is keyed by the hash chain of blocks 0..i (so equal keys mean equal prefixes, the
    tokens are compared too); a lookup stops at the first missing block and always leaves at
    least one token to compute (its logits are the next-token distribution). Memory:
    ``capacity`` blocks of BLOCK tokens of K and V for every layer, outside the scheduler's KV
    budget."""

    BLOCK = 16

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.blocks: OrderedDict[int, tuple] = OrderedDict()  # key -> (tokens, [(k, v)])
        self.hit_tokens = 0

    def _keys(self, ids: list[int], n_blocks: int):
        h = 0
        for i in range(n_blocks):
            block = tuple(ids[i * self.BLOCK:(i + 1) * self.BLOCK])
            h = hash((h, block))
            yield h, block

    def lookup(self, ids: list[int]) -> tuple[int, list]:
        """(p, [(k, v)] per layer of shape (Hkv, p, Dh)) for the longest cached prefix."""
        found = []
        for key, block in self._keys(ids, (len(ids) - 1) // self.BLOCK if self.capacity else 0):
            hit = self.blocks.get(key)
            if hit is None or hit[0] != block:
                break
            self.blocks.move_to_end(key)
            found.append(hit[1])
        if not found:
            return 0, []
        p = len(found) * self.BLOCK
        self.hit_tokens += p
        layers = [(torch.cat([f[i][0] for f in found], dim=1),
                   torch.cat([f[i][1] for f in found], dim=1)) for i in range(len(found[0]))]
        return p, layers

    def insert(self, ids: list[int], rows: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Remember the whole blocks of ``ids``; ``rows`` = per layer (K, V) of the row
        holding them, (Hkv, T, Dh), columns = positions."""
        for i, (key, block) in enumerate(self._keys(ids, len(ids) // self.BLOCK)
                                         if self.capacity else ()):
            if key in self.blocks:
                self.blocks.move_to_end(key)
                continue
            a, z = i * self.BLOCK, (i + 1) * self.BLOCK
            self.blocks[key] = (block, [(k[:, a:z].clone(), v[:, a:z].clone()) for k, v in rows])
            if len(self.blocks) > self.capacity:
                self.blocks.popitem(last=False)
