"""A lean one-token decode step for Llama-family models, over the model's own weights.

Why: at batch 1 on a CPU the HF forward spends about as long in Python as in matmuls (a
one-token SmolLM2-135M forward: ~58 ms, ~27 ms of it matmul, DATA.md) - hooks and wrappers
per module, a causal mask built per step, and a ``torch.cat`` per layer to grow the KV cache.
This step runs the same arithmetic in the same order (RMSNorm in fp32, RoPE from the same
``inv_freq``, SDPA with packed GQA, SiLU MLP) on preallocated KV buffers written in place, so
its logits match the HF forward (tested) while doing far less per token.

Used by ``decode.stream_tokens`` after an ordinary HF prefill (whose cache is copied into the
buffers) when ``LlamaStep.supports(model)``: a plain ``LlamaForCausalLM`` with default RoPE,
no attention / MLP biases and plain ``nn.Linear`` projections (no LoRA; torchao-quantized
weights and torch's dynamic int8 linears are fine).
Anything else decodes through the HF forward.

Legend: B rows, H query heads, Hkv key/value heads, G = H / Hkv, Dh head dim, T buffer length,
n tokens in the cache after the current one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lmlab.infer import native
from lmlab.infer.precision import quantize_acts


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """LlamaRMSNorm, op for op (fp32 statistics)."""
    dtype = x.dtype
    x = x.to(torch.float32)
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x.to(dtype)


def _rms_norm_op(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """The same normalisation as one torch op (equal up to fp32 rounding in fp32)."""
    if x.dtype != torch.float32:
        return _rms_norm(x, weight, eps)
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


# plain linears (weights may be torchao tensor subclasses: F.linear dispatches to their kernel)
# and torch's dynamic int8 linear (lmlab.quant method fbgemm-int8), which has no .weight tensor
_LINEARS = (torch.nn.Linear, torch.ao.nn.quantized.dynamic.Linear)


def _lin(x: torch.Tensor, mod: torch.nn.Module) -> torch.Tensor:
    return F.linear(x, mod.weight) if type(mod) is torch.nn.Linear else mod(x)


def plain_fp32_cpu(t) -> bool:
    """A plain fp32 CPU tensor or parameter (no torchao subclass, no half precision, no GPU):
    what our own product paths (``lin_few_rows``, ``packed``) take."""
    return type(t) in (torch.Tensor, torch.nn.Parameter) and t.dtype == torch.float32 and \
        t.device.type == "cpu"


# rows that ``lin_few_rows`` computes as W @ x^T: up to a check of 10 drafted tokens
FEW_ROWS = 11


def lin_few_rows(x: torch.Tensor, mod: torch.nn.Module) -> torch.Tensor:
    """``_lin``, except that 2 .. ``FEW_ROWS`` rows over a plain fp32 CPU weight run as
    ``W @ x^T``. MKL picks its kernels by the operands' orientation, and for a few rows this
    one is much faster on the 2-core EPYC: SmolLM2's 211 products for 2 / 3 / 8 rows took 14.8 /
    20.8 / 33.6 ms against ``F.linear``'s 46.4 / 64.5 / 46.1 (one row: 25.6 vs 23.0, so one row
    keeps ``F.linear``; benchmarks/RESULTS.md, Inference, "Session 13"). The sums round
    differently from ``F.linear``'s, so plain decoding (bit for bit HF's) does not use it; a
    speculative check does (its rows already round differently from one-row steps: exactness
    there is token for token)."""
    w = getattr(mod, "weight", None)
    if type(mod) is torch.nn.Linear and plain_fp32_cpu(w):
        rows = x.reshape(-1, x.shape[-1])
        if 2 <= rows.shape[0] <= FEW_ROWS:
            return torch.mm(w, rows.t()).t().contiguous().view(*x.shape[:-1], w.shape[0])
    return _lin(x, mod)


A8 = "_lmlab_a8"  # the attribute marking a packed int8 copy (its inputs rounded per block)
_MM = torch.ops.mkldnn._linear_pointwise.default if torch.backends.mkldnn.is_available() \
    else None


def _mm(x: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    """x @ W.T over a oneDNN-packed W (``infer.packed``, which runs its products through this
    too). A copy packed for int8 decoding (``packed.A8``) rounds x first, as the int8 step
    does (``precision.quantize_acts``)."""
    if getattr(packed, A8, False):
        x = quantize_acts(x)
    return _MM(x, packed, None, "none", [], "")


def is_lora(mod) -> bool:
    """A peft LoRA ``Linear`` the lean step can run through its own forward: unmerged, no DoRA,
    over a bias-free ``nn.Linear``."""
    if not type(mod).__module__.startswith("peft."):  # (no peft import for plain modules)
        return False
    try:
        from peft.tuners.lora.layer import Linear as LoraLinear
    except ImportError:
        return False
    return (type(mod) is LoraLinear and type(mod.base_layer) is torch.nn.Linear
            and mod.base_layer.bias is None and not mod.merged
            and not any(mod.use_dora.get(a, False) for a in mod.active_adapters))


def unwrap(model):
    """The ``LlamaForCausalLM`` inside a peft model (its projections are LoRA layers)."""
    if hasattr(model, "peft_config") and hasattr(model, "base_model"):
        return getattr(model.base_model, "model", model)
    return model


class LlamaStep:
    """Decode state for one batch: KV buffers (B, Hkv, T, Dh) per layer, and ``step``."""

    @staticmethod
    def supports(model, lora: bool = False) -> bool:
        """``lora``: also a peft model whose LoRA layers pass ``is_lora`` (the step then runs
        on ``unwrap(model)``)."""
        if hasattr(model, "peft_config"):
            if not lora:
                return False
            model = unwrap(model)
        if type(model).__name__ != "LlamaForCausalLM":
            return False
        cfg = model.config
        rope = (getattr(cfg, "rope_parameters", None) or {}).get("rope_type", "default")
        if rope != "default" or getattr(cfg, "attention_bias", False) or \
                getattr(cfg, "mlp_bias", False) or getattr(cfg, "hidden_act", "silu") != "silu":
            return False
        layer = model.model.layers[0]
        if type(layer.self_attn).__name__ != "LlamaAttention" or \
                type(layer.mlp).__name__ != "LlamaMLP":  # wrapped blocks (bottleneck adapters)
            return False
        linears = [layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj,
                   layer.self_attn.o_proj, layer.mlp.gate_proj, layer.mlp.up_proj,
                   layer.mlp.down_proj, model.lm_head]
        return all(type(m) in _LINEARS or (lora and is_lora(m)) for m in linears)

    def __init__(self, model, cache, batch: int, length: int, lin=None,
                 native_bf16: bool = False):
        """Buffers of ``length`` tokens, holding an HF prefill ``cache`` (a DynamicCache), or
        nothing when ``cache`` is None (the first ``step`` is then the prefill). ``lin(x,
        module)`` runs the projections (default ``F.linear`` over the module's weight;
        ``packed.packed_linears(model, weights)`` for oneDNN-packed weights, rounded to
        ``weights``, which the C step then reads too). ``native_bf16``: with fp32 packed
        weights, the C step reads bfloat16 copies of them (a speculative draft: half the
        bytes; see ``native.NativeStep``)."""
        model = unwrap(model)
        cfg, m = model.config, model.model
        self.model = model
        # a PackedLinears is pinned for the step's life (one decode): its copies are checked
        # for staleness once, not at every call
        self.lin = lin.pinned() if hasattr(lin, "pinned") else (lin or _lin)
        self._plan = False  # the packed-weight plan: not resolved yet (see _packed_plan)
        self._native = False  # the C step (infer.native): not resolved yet (see _native_step)
        self.native_bf16 = native_bf16
        self.H, self.Hkv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.Dh = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.H
        self.eps = cfg.rms_norm_eps
        self.scale = m.layers[0].self_attn.scaling
        rot = m.rotary_emb
        self.inv_freq, self.rope_scale = rot.inv_freq.float(), rot.attention_scaling
        p = next(model.parameters())
        self.k, self.v = [], []
        for i in range(cfg.num_hidden_layers):
            k = torch.empty(batch, self.Hkv, length, self.Dh, dtype=p.dtype, device=p.device)
            v = torch.empty_like(k)
            if cache is not None:
                n = cache.layers[i].keys.shape[2]
                k[:, :, :n], v[:, :, :n] = cache.layers[i].keys, cache.layers[i].values
            self.k.append(k)
            self.v.append(v)

    def ensure(self, length: int) -> None:
        """Grow the buffers (doubling) so that ``length`` tokens fit."""
        have = self.k[0].shape[2]
        if length <= have:
            return
        new = max(length, 2 * have)
        for bufs in (self.k, self.v):
            for i, b in enumerate(bufs):
                g = b.new_empty(b.shape[0], b.shape[1], new, b.shape[3])
                g[:, :, :have] = b
                bufs[i] = g

    def keep_rows(self, idx: torch.Tensor) -> None:
        self.k = [k[idx] for k in self.k]
        self.v = [v[idx] for v in self.v]

    def _rope(self, pos: torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = pos[..., None].float() * self.inv_freq  # (B, L, Dh/2), as LlamaRotaryEmbedding
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos() * self.rope_scale, emb.sin() * self.rope_scale
        return cos.to(dtype)[:, None], sin.to(dtype)[:, None]  # (B, 1, L, Dh)

    def step(self, tokens: torch.Tensor, pos: torch.Tensor, n: int,
             mask: torch.Tensor | None, last_only: bool = False, head=None) -> torch.Tensor:
        """tokens (B, L) at positions pos (B, L), filling cache slots n-L .. n-1; mask (B, n)
        of 1 = attend, or None -> logits (B, L, V) (or (B, 1, V) with ``last_only``). L = 1 is
        the decode step; L > 1 (a prefill, or a speculative verification) attends causally
        within the block. ``head``: a function of the final hidden states (B, L, D) giving the
        logits in place of the LM head (a draft scoring part of the vocabulary); the C step
        computes it itself when the function has ``native_rows`` = (first, extra): the LM head's
        first rows, then the rows of ``extra``."""
        m, lin = self.model.model, self.lin
        fused = getattr(lin, "fused", None)  # PackedLinears: q/k/v and gate/up in one product
        (B, L), H, Hkv, Dh = tokens.shape, self.H, self.Hkv, self.Dh
        if B * L <= native.MAX_ROWS and self._native_step() is not None:
            rows = getattr(head, "native_rows", None)
            own = head is not None and rows is None  # the head runs in torch after the step
            x = self._native.step(self.k, self.v, tokens, pos, n, mask, last_only,
                                  hidden=own, head_rows=rows)
            return head(x) if own else x
        x = m.embed_tokens(tokens)  # (B, L, D)
        cos, sin = self._rope(pos, x.dtype)  # (B, 1, L, Dh)
        pad = None if mask is None else mask[:, None, None, :].bool()  # (B, 1, 1, n)
        attn_mask = pad
        if L > 1:  # query i sees keys 0 .. n-L+i
            causal = torch.ones(L, n, dtype=torch.bool, device=x.device).tril(n - L)
            attn_mask = causal[None, None] if pad is None else causal[None, None] & pad
            if pad is not None:  # a padding query sees itself: no all-masked row, no NaN
                cols = torch.arange(n, device=x.device)
                rows = torch.arange(n - L, n, device=x.device)
                attn_mask = attn_mask | (cols[None, :] == rows[:, None])[None, None]
        if x.dtype == torch.float32 and self._packed_plan() is not None:
            x = self._packed_layers(x, cos, sin, n, attn_mask)
            if last_only:
                x = x[:, -1:]
            x = torch.rms_norm(x, self._dshape, m.norm.weight, self.eps)
            return head(x) if head is not None else _mm(x, self._plan_head)
        # packed weights (equal up to fp32 rounding anyway): also fewer small ops per layer, one
        # fused RMSNorm op and one RoPE over q and k together
        norm = _rms_norm_op if fused else _rms_norm
        for i, layer in enumerate(m.layers):
            a, mlp = layer.self_attn, layer.mlp
            h = norm(x, layer.input_layernorm.weight, self.eps)
            qkv = fused(h, (a.q_proj, a.k_proj, a.v_proj)) if fused else None
            if qkv is not None:  # one product over the stacked packed weights
                qk = qkv[..., :(H + Hkv) * Dh].view(B, L, H + Hkv, Dh).transpose(1, 2)
                qk = qk * cos + _rotate_half(qk) * sin  # (B, H + Hkv, L, Dh)
                q, k = qk[:, :H], qk[:, H:]
                v = qkv[..., (H + Hkv) * Dh:].view(B, L, Hkv, Dh).transpose(1, 2)
            else:
                q = lin(h, a.q_proj).view(B, L, H, Dh).transpose(1, 2)  # (B, H, L, Dh)
                k = lin(h, a.k_proj).view(B, L, Hkv, Dh).transpose(1, 2)
                v = lin(h, a.v_proj).view(B, L, Hkv, Dh).transpose(1, 2)
                q = q * cos + _rotate_half(q) * sin
                k = k * cos + _rotate_half(k) * sin
            self.k[i][:, :, n - L:n] = k
            self.v[i][:, :, n - L:n] = v
            o = self._attend(q, self.k[i][:, :, :n], self.v[i][:, :, :n], attn_mask)
            o = o.transpose(1, 2).contiguous().reshape(B, L, -1)
            x = x + lin(o, a.o_proj)
            h = norm(x, layer.post_attention_layernorm.weight, self.eps)
            gu = fused(h, (mlp.gate_proj, mlp.up_proj)) if fused else None
            if gu is not None:
                g, u = gu.chunk(2, dim=-1)
            else:
                g, u = lin(h, mlp.gate_proj), lin(h, mlp.up_proj)
            x = x + lin(F.silu(g) * u, mlp.down_proj)
        if last_only:
            x = x[:, -1:]
        x = norm(x, m.norm.weight, self.eps)
        return head(x) if head is not None else lin(x, self.model.lm_head)  # (B, L, V)

    def greedy(self, token: int, pos: int, n: int, steps: int, stop_ids=(), head=None):
        """Greedy decoding of one unpadded row through the C step in one call (see
        ``native.NativeStep.greedy``): -> (tokens, logits (k, width)), or None when the C step
        does not run here (then decode token by token through ``step``). ``head``: as in
        ``step``, a head over part of the vocabulary with ``native_rows`` and ``native_ids``
        (the token ids of its extra rows); any other head -> None."""
        rows = ids = None
        if head is not None:
            rows, ids = getattr(head, "native_rows", None), getattr(head, "native_ids", None)
            if rows is None or ids is None:
                return None
        if self.k[0].shape[0] != 1 or self._native_step() is None:
            return None
        self.ensure(n + steps - 1)
        return self._native.greedy(self.k, self.v, token, pos, n, steps, stop_ids, rows, ids)

    def _native_step(self):
        """The C step (``infer.native``) for small steps: with packed weights (``pack``, the
        mode that already trades bit-for-bit equality for speed) on a model it supports, when
        it builds here; else None."""
        if self._native is False:
            packed = hasattr(self.lin, "pinned_weight")
            # the precision of the packed weights (infer.precision); a draft's fp32 in bf16
            weights = getattr(getattr(self.lin, "lin", None), "weights", "fp32")
            if weights == "fp32" and self.native_bf16:
                weights = "bf16"
            self._native = native.step_for(self.model, self, weights) if packed else None
        return self._native

    def _packed_plan(self) -> list | None:
        """Per layer (input norm, packed q/k/v, packed o, post norm, packed gate/up, packed
        down), resolved once per step object (the pinned copies hold for one decode); None when
        the projections are not all packed (then the general path runs)."""
        if self._plan is not False:
            return self._plan
        self._plan = None
        if not hasattr(self.lin, "pinned_weight"):
            return None
        w, rows = self.lin.pinned_weight, []
        for layer in self.model.model.layers:
            a, mlp = layer.self_attn, layer.mlp
            row = (layer.input_layernorm.weight, w((a.q_proj, a.k_proj, a.v_proj)),
                   w(a.o_proj), layer.post_attention_layernorm.weight,
                   w((mlp.gate_proj, mlp.up_proj)), w(mlp.down_proj))
            if any(t is None for t in row):
                return None
            rows.append(row)
        self._plan_head = w(self.model.lm_head)
        if self._plan_head is None:
            return None
        half = self.Dh // 2  # rotate_half(x) = x[..., perm] * sign
        self._perm = torch.cat([torch.arange(half, self.Dh), torch.arange(half)]).to(
            self.model.lm_head.weight.device)
        self._sign = torch.cat([-torch.ones(half), torch.ones(half)]).to(self._perm.device)
        self._dshape = [self.model.config.hidden_size]
        self._plan = rows
        return rows

    def _packed_layers(self, x, cos, sin, n: int, attn_mask) -> torch.Tensor:
        """The layers over packed weights, with as few Python-level calls as the arithmetic
        allows: per layer two norms, four packed products, one RoPE over q and k (``addcmul``
        with a gathered copy instead of ``rotate_half``'s slices and ``cat``), two cache writes
        and one attention. At batch 1 the general loop's ~45 calls per layer cost over half as
        much as the layer's products (profile: ~14 of ~37 ms per token outside the products);
        a prototype of this loop took 32.5 instead of 36 ms per token (same arithmetic, equal
        up to fp32 rounding)."""
        (B, L), H, Hkv, Dh, eps = x.shape[:2], self.H, self.Hkv, self.Dh, self.eps
        G, HK, D = H // Hkv, H + Hkv, self._dshape
        sin = sin * self._sign  # (B, 1, L, Dh)
        perm, scale = self._perm, self.scale
        for (ln1, wqkv, wo, ln2, wgu, wdown), kb, vb in zip(self._plan, self.k, self.v):
            t = _mm(torch.rms_norm(x, D, ln1, eps), wqkv).view(B, L, HK + Hkv, Dh).transpose(1, 2)
            qk = t[:, :HK]  # (B, H + Hkv, L, Dh): q heads, then k heads
            qk = torch.addcmul(qk * cos, qk.index_select(-1, perm), sin)
            kb[:, :, n - L:n] = qk[:, H:]
            vb[:, :, n - L:n] = t[:, HK:]
            if L == 1:  # one query: its heads packed onto the key/value heads
                o = F.scaled_dot_product_attention(
                    qk[:, :H].reshape(B, Hkv, G, Dh), kb[:, :, :n], vb[:, :, :n],
                    attn_mask=attn_mask, scale=scale).reshape(B, 1, H * Dh)
            else:
                o = self._attend(qk[:, :H], kb[:, :, :n], vb[:, :, :n], attn_mask)
                o = o.transpose(1, 2).reshape(B, L, H * Dh)
            x = _mm(o, wo) + x
            gu = _mm(torch.rms_norm(x, D, ln2, eps), wgu)
            i = gu.shape[-1] // 2
            x = _mm(F.silu(gu[..., :i]) * gu[..., i:], wdown) + x
        return x

    def _attend(self, q, K, V, attn_mask) -> torch.Tensor:
        """q (B, H, L, Dh), K/V (B, Hkv, n, Dh) -> (B, H, L, Dh), the way HF's SDPA path does."""
        B, H, L, Dh = q.shape
        G = H // self.Hkv
        if attn_mask is None:  # no mask: SDPA's own GQA
            return F.scaled_dot_product_attention(q, K, V, scale=self.scale,
                                                  enable_gqa=G > 1)
        if L == 1:  # one query: its heads packed onto the key/value heads
            o = F.scaled_dot_product_attention(q.reshape(B, self.Hkv, G, Dh), K, V,
                                               attn_mask=attn_mask, scale=self.scale)
            return o.reshape(B, H, 1, Dh)
        if G > 1:  # repeat_kv
            K = K[:, :, None].expand(-1, -1, G, -1, -1).reshape(B, H, -1, Dh)
            V = V[:, :, None].expand(-1, -1, G, -1, -1).reshape(B, H, -1, Dh)
        return F.scaled_dot_product_attention(q, K, V, attn_mask=attn_mask, scale=self.scale)
