"""The native (C) decode step (infer.native): the torch step's logits and cache writes up to fp32
rounding (padding, blocks, last-only, a custom head, growing and reordered buffers), greedy
output equal to the HF forward's, clear errors, and a clean fallback without a compiler."""

import copy
from types import SimpleNamespace

import pytest
import torch

from lmlab.infer import native
from lmlab.infer.decode import decode, left_pad, stream_tokens
from lmlab.infer.fastpath import LlamaStep
from lmlab.infer.packed import can_pack, packed_linears
from lmlab.infer.sampling import SamplingParams
from lmlab.models.tiny import PRESETS
from tests.tolerance import BF16_U, approx_fp32, forward_tol, fp32_tol, sum_terms

from ..tiny import odd_llama

PROMPTS = ["Hello there, how are", "The quick brown fox jumps over the lazy dog and then", "A"]

pytestmark = [
    pytest.mark.skipif(not can_pack(torch.zeros(2, 2)), reason="this torch build has no oneDNN"),
    pytest.mark.skipif(not native.available(), reason=f"no native step: {native.why_not()}"),
]


def _pair(model, B, T, rounded=None):
    """(torch step, native step) over the same packed weights, empty buffers of T tokens;
    with ``rounded`` (``_rounded_copy(model)``, made outside inference mode) the native step
    runs over bfloat16 copies and the torch step over the rounded copy (the same products)."""
    bf16 = rounded is not None
    twin = rounded if bf16 else model
    lin = packed_linears(twin)
    ref = LlamaStep(twin, None, B, T, lin=lin)
    ref._native = None  # resolved: the torch path
    nat = LlamaStep(model, None, B, T, lin=packed_linears(model) if bf16 else lin,
                    native_bf16=bf16)
    assert nat._native_step() is not None and nat._native_step().bf16 is bf16
    return ref, nat


# the varied model has tiny:llama's shape; its logits reach ~10-100
TOL = forward_tol(SimpleNamespace(**PRESETS["llama"]))


def _close(a, b, tol: float = TOL):
    """Equal up to fp32 rounding of sums taken in another order: within ``tol`` of the largest
    magnitude (tests/tolerance.py: forward_tol)."""
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, rtol=0, atol=tol * float(b.abs().max()))


def _same(ref, nat, n):
    for a, b in zip(ref.k + ref.v, nat.k + nat.v):
        _close(b[:, :, :n], a[:, :, :n])


def test_native_step_equals_torch_step_padded_blocks_and_single_tokens(model, monkeypatch):
    monkeypatch.setattr(native, "MAX_ROWS", 64)  # every step through C, prefill included
    torch.manual_seed(0)
    B, P, V = 3, 7, model.config.vocab_size
    ids = torch.randint(0, V, (B, P + 5))
    mask = torch.ones(B, P + 5, dtype=torch.long)
    mask[0, :3] = 0  # left padding of different lengths
    mask[2, :1] = 0
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    calls = []
    with torch.inference_mode():
        ref, nat = _pair(model, B, 16)
        real = nat._native.step
        nat._native.step = lambda *a, **k: calls.append(a[2].shape) or real(*a, **k)
        for a, b in [(0, P), (P, P + 3), (P + 3, P + 4), (P + 4, P + 5)]:
            r = ref.step(ids[:, a:b], pos[:, a:b], b, mask[:, :b])
            o = nat.step(ids[:, a:b], pos[:, a:b], b, mask[:, :b])
            assert o.shape == r.shape == (B, b - a, V)
            _close(o, r)
            _same(ref, nat, b)
        assert len(calls) == 4  # the C step ran every one of them
        # no mask, last position only; then a custom head over the final hidden states
        ref, nat = _pair(model, 1, 8)
        p5 = torch.arange(5)[None]
        r = ref.step(ids[:1, :5], p5, 5, None, last_only=True)
        o = nat.step(ids[:1, :5], p5, 5, None, last_only=True)
        assert o.shape == r.shape == (1, 1, V)
        _close(o, r)
        head = lambda x: x[..., :4] * 3.0
        r = ref.step(ids[:1, 5:6], p5[:, :1] + 5, 6, None, head=head)
        o = nat.step(ids[:1, 5:6], p5[:, :1] + 5, 6, None, head=head)
        assert o.shape == r.shape == (1, 1, 4)
        _close(o, r)


def _odd_model(vocab: int, inter: int, positions: int = 128):
    """Widths of 60 (heads of 20: attention's generic value loop), no multiples of 8 (the
    kernels' scalar tails), row counts that need not divide by 4 (the products' fallbacks)."""
    return odd_llama(vocab, inter, positions=positions)


@pytest.mark.parametrize("vocab,inter,bf16", [(1000, 100, False), (1001, 102, False),
                                              (1001, 102, True)])
def test_native_blocks_of_every_size_equal_the_torch_step(vocab, inter, bf16, monkeypatch):
    """Blocks of 1-26 tokens (one-input loop, four inputs per pass, blocks of 4 and 2 rows,
    inputs in groups over 12), and 3 padded rows of 5 (15 inputs): the torch step's logits and
    cache writes; with bfloat16 weights, those of the torch step over the rounded weights."""
    monkeypatch.setattr(native, "MAX_ROWS", 64)
    model = _odd_model(vocab, inter)
    rounded = _rounded_copy(model) if bf16 else None
    ids = torch.randint(0, vocab, (3, 40), generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        for L in range(1, 27):
            ref, nat = _pair(model, 1, 40, rounded)
            for s in (ref, nat):  # 6 tokens of context first
                s.step(ids[:1, :6], torch.arange(6)[None], 6, None)
            pos = torch.arange(6, 6 + L)[None]
            r = ref.step(ids[:1, 6:6 + L], pos, 6 + L, None)
            o = nat.step(ids[:1, 6:6 + L], pos, 6 + L, None)
            assert o.shape == r.shape == (1, L, vocab)
            _close(o, r)
            _same(ref, nat, 6 + L)
        ref, nat = _pair(model, 3, 40, rounded)
        mask = torch.ones(3, 5, dtype=torch.long)
        mask[1, :2] = 0
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        r, o = (s.step(ids[:, :5], pos, 5, mask) for s in (ref, nat))
        _close(o, r)


@pytest.mark.parametrize("which", ["tiny", "odd"])
def test_attention_over_several_key_chunks(model, which, monkeypatch):
    """Contexts spanning several of native.c's key chunks (ATT_CHUNK 64 here: 3 chunks,
    merged afterwards): a 180-token prefill, then blocks of 8, 1 and 3 tokens, with one row's left
    padding masking whole chunks; then rows of 20, 100 and 190 tokens in one step through
    ``cols`` (the server's decode step) against each row alone. Heads of 16 (the tiny model)
    and of 20 (the generic value loop). Within forward_tol over 192 tokens (1.7e-4) of the
    largest logit: over 180 tokens the varied model's rounding differences grow to ~4e-5 of it
    (the same before the chunks, 2026-12-05); a chunk merged wrongly is off by far more."""
    monkeypatch.setattr(native, "MAX_ROWS", 512)
    monkeypatch.setattr(native, "ATT_CHUNK", 64)
    m = model if which == "tiny" else _odd_model(1000, 100, positions=256)
    V, T = m.config.vocab_size, 240
    ids = torch.randint(0, V, (3, T), generator=torch.Generator().manual_seed(5))
    mask = torch.ones(2, T, dtype=torch.long)
    mask[0, :150] = 0  # chunks 0 and 1 all padding for row 0, chunk 2 partly
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        ref, nat = _pair(m, 2, T)
        for a, b in [(0, 180), (180, 188), (188, 189), (189, 192)]:
            r, o = (s.step(ids[:2, a:b], pos[:, a:b], b, mask[:, :b]) for s in (ref, nat))
            _close(o, r, forward_tol(m.config, 192))
        lens = [20, 100, 190]
        alone = []
        _, nat = _pair(m, 3, T)
        for row, n in enumerate(lens):
            one, _ = _pair(m, 1, T)
            one.step(ids[row:row + 1, :n], torch.arange(n)[None], n, None)
            for mine, its in zip(nat.k + nat.v, one.k + one.v):
                mine[row, :, :n] = its[0, :, :n]
            alone.append(one.step(ids[row:row + 1, n:n + 1], torch.tensor([[n]]), n + 1, None))
        cols = torch.tensor(lens)[:, None]  # each row's next column, and its position
        tok = torch.tensor([[int(ids[r, n])] for r, n in enumerate(lens)])
        got = nat._native_step().step(nat.k, nat.v, tok, cols, max(lens) + 1, None, False,
                                      False, cols=cols)
        assert got.shape == (3, 1, V)
        got, want = got[:, 0], torch.cat([a[0] for a in alone])
        _close(got, want, forward_tol(m.config, 192))


def test_native_step_follows_grown_and_reordered_buffers(model):
    """``ensure`` (new, larger buffers) and ``keep_rows`` (rows dropped and repeated) between
    steps: the C step writes and reads the current buffers, not stale pointers."""
    torch.manual_seed(1)
    V = model.config.vocab_size
    ids = torch.randint(0, V, (2, 12))
    calls = []
    with torch.inference_mode():
        ref, nat = _pair(model, 2, 6)
        real = nat._native.step
        nat._native.step = lambda *a, **k: calls.append(a[2].shape) or real(*a, **k)
        pos = torch.arange(12)[None].expand(2, -1)
        for s in (ref, nat):
            s.step(ids[:, :4], pos[:, :4], 4, None)
        for t in range(4, 10):
            if t == 6:
                for s in (ref, nat):
                    s.ensure(12)
            if t == 8:
                for s in (ref, nat):
                    s.keep_rows(torch.tensor([1, 1]))
            r = ref.step(ids[:, t:t + 1], pos[:, t:t + 1], t + 1, None)
            o = nat.step(ids[:, t:t + 1], pos[:, t:t + 1], t + 1, None)
            assert o.shape == r.shape == (2, 1, V)
            _close(o, r)
        # the 8-input prefill and each of the 6 one-token steps ran the C step
        assert calls == [(2, 4)] + [(2, 1)] * 6
        assert nat.k[0].shape[2] == 12 and ref.k[0].shape[2] == 12  # grown
        for a, b in zip(ref.k + ref.v, nat.k + nat.v):  # cache writes in the current buffers
            _close(b[:, :, :10], a[:, :, :10])


def _rounded_copy(model):
    """A copy of ``model`` whose projections and (untied) LM head hold their bfloat16 values in
    fp32; its embedding and norms stay as they are."""
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for mod in twin.modules():
            if type(mod) is torch.nn.Linear:
                mod.weight = torch.nn.Parameter(mod.weight.to(torch.bfloat16).float())
    assert twin.lm_head.weight.data_ptr() != twin.model.embed_tokens.weight.data_ptr()
    return twin


@pytest.mark.parametrize("bf16", [False, True])
def test_head_rows_and_bf16_weights(model, bf16):
    """``native_bf16``: the step over bfloat16 copies equals the fp32 step over a model whose
    weights were rounded to bfloat16 (the same products); ``head`` with ``native_rows`` =
    (first, extra): the C step's logits are the full head's at ids 0 .. first-1, then the
    extra rows' (here rows of the LM head at chosen ids), with no hidden states handed back."""
    torch.manual_seed(3)
    V = model.config.vocab_size
    ids = torch.randint(0, V, (1, 9))
    pos = torch.arange(9)[None]
    ref_model = _rounded_copy(model) if bf16 else model
    W = ref_model.lm_head.weight.detach()
    extra_ids = torch.tensor([V - 5, V - 2])

    class Rows:
        native_rows = (7, W[extra_ids].clone())

        def __call__(self, x):  # pragma: no cover - the C step must not hand back hidden
            raise AssertionError("the C step computes native_rows itself")

    with torch.inference_mode():
        ref = LlamaStep(ref_model, None, 1, 12, lin=packed_linears(ref_model))
        nat = LlamaStep(model, None, 1, 12, lin=packed_linears(model), native_bf16=bf16)
        assert ref._native_step() is not None and nat._native_step().bf16 is bf16
        r = ref.step(ids[:, :4], pos[:, :4], 4, None)
        o = nat.step(ids[:, :4], pos[:, :4], 4, None)
        _close(o, r)
        _same(ref, nat, 4)
        for t in range(4, 9):
            r = ref.step(ids[:, t:t + 1], pos[:, t:t + 1], t + 1, None)
            o = nat.step(ids[:, t:t + 1], pos[:, t:t + 1], t + 1, None, head=Rows())
            want = torch.cat([r[..., :7], r[..., extra_ids]], -1)
            assert o.shape == (1, 1, 9)
            _close(o, want)
        _same(ref, nat, 9)
    if bf16:  # and the rounding shows: the fp32 step differs
        with torch.inference_mode():
            full = LlamaStep(model, None, 1, 12, lin=packed_linears(model))
            full.step(ids[:, :4], pos[:, :4], 4, None)
            assert not torch.allclose(full.step(ids[:, 4:5], pos[:, 4:5], 5, None)[..., :7],
                                      want[..., :7], atol=1e-5)


def test_bf16_copies_are_kept_and_renewed(model):
    twin = copy.deepcopy(model)
    w = twin.model.layers[0].mlp.down_proj.weight
    a = native.bf16_copy(twin, w)
    assert a.dtype == torch.bfloat16 and a is native.bf16_copy(twin, w)  # made once
    # one rounding to bfloat16 (to nearest): within BF16_U = 2**-8 of each weight, on any CPU
    torch.testing.assert_close(a.float(), w.detach(), rtol=BF16_U, atol=0)
    with torch.no_grad():
        w.add_(1.0)  # changed in place: a new copy
    b = native.bf16_copy(twin, w)
    assert b is not a
    torch.testing.assert_close(b.float(), w.detach(), rtol=BF16_U, atol=0)
    assert not hasattr(copy.deepcopy(twin), "_lmlab_bf16") or \
        not copy.deepcopy(twin)._lmlab_bf16  # a copied model makes its own


def test_greedy_through_the_native_step_equals_hf_greedy(model, tokenizer, monkeypatch):
    steps = []
    real = native.NativeStep.step
    monkeypatch.setattr(native.NativeStep, "step",
                        lambda self, *a, **k: steps.append(a[2].shape) or real(self, *a, **k))
    p = SamplingParams(temperature=0, max_new_tokens=12, ignore_eos=True)
    for prompts in (PROMPTS[:1], PROMPTS):  # batch 1, and 3 left-padded rows
        ids, mask = left_pad([tokenizer(t)["input_ids"] for t in prompts],
                             tokenizer.pad_token_id)
        hf = decode(model, ids, mask, p, fast=False).tokens
        steps.clear()
        assert decode(model, ids, mask, p, pack=True, burst=1).tokens == hf
        one = [s for s in steps if s[1] == 1]  # the prefill too, when it is small enough
        assert len(one) == 11 and all(s == (len(prompts), 1) for s in one)
        assert len(steps) == 11 + (ids.numel() <= native.MAX_ROWS)
        n = len(steps)
        with native.off():  # the torch packed step: the same tokens, no C call
            assert decode(model, ids, mask, p, pack=True).tokens == hf
        assert len(steps) == n
    # sampled: the same draws as the torch packed step from the same generator
    s = SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=12, ignore_eos=True)
    a = decode(model, ids, mask, s, pack=True, generator=torch.Generator().manual_seed(5))
    with native.off():
        b = decode(model, ids, mask, s, pack=True, generator=torch.Generator().manual_seed(5))
    assert a.tokens == b.tokens


def test_a_greedy_run_in_one_call_equals_greedy_token_by_token(model, tokenizer,
                                                                monkeypatch):
    ids = tokenizer(PROMPTS[1], return_tensors="pt")["input_ids"]
    p = SamplingParams(temperature=0, max_new_tokens=20, ignore_eos=True)
    runs, real = [], native.NativeStep.greedy
    monkeypatch.setattr(native.NativeStep, "greedy",
                        lambda self, *a, **k: runs.append(a[5]) or real(self, *a, **k))
    one = list(stream_tokens(model, ids, None, p, pack=True))  # burst 1: a step per token
    assert not runs
    run = list(stream_tokens(model, ids, None, p, pack=True, burst=8))
    assert runs == [8, 8, 3]  # the first token from the prefill, then 19 in three calls
    assert [s.tokens for s in run] == [s.tokens for s in one]
    assert [s.finished for s in run] == [s.finished for s in one] == [{}] * 19 + [{0: "length"}]
    for a, b in zip(one, run):  # the same C step: its logits bit for bit
        assert torch.equal(a.logits, b.logits)
    assert decode(model, ids, None, p, pack=True).tokens == [[s.tokens[0] for s in one]]
    with native.off():  # no C step: token by token through torch
        runs.clear()
        assert decode(model, ids, None, p, pack=True).tokens == [[s.tokens[0] for s in one]]
        assert not runs
    # a stop token ends a run where it appears, as it ends the token-by-token loop
    toks = [s.tokens[0] for s in one]
    at = next(i for i in range(3, 20) if toks[i] not in toks[:i])
    stop = SamplingParams(temperature=0, max_new_tokens=20, ignore_eos=True,
                          stop_token_ids=[toks[at]])
    runs.clear()
    d = decode(model, ids, None, stop, pack=True)
    assert d.tokens == [toks[:at + 1]] and d.finish_reasons == ["eos"] and runs == [19]
    # not plain greedy, or several rows: token by token
    for q, x in ((SamplingParams(temperature=0, max_new_tokens=5, repetition_penalty=1.3), ids),
                 (SamplingParams(temperature=0, max_new_tokens=5, logprobs=True), ids),
                 (p, ids.repeat(2, 1))):
        runs.clear()
        decode(model, x, None, q, pack=True)
        assert not runs


def test_a_token_outside_the_vocabulary_is_a_clear_error(model):
    with torch.inference_mode():
        _, nat = _pair(model, 1, 4)
        V = model.config.vocab_size
        with pytest.raises(ValueError, match=rf"\[{V}\] outside the vocabulary"):
            nat.step(torch.tensor([[V]]), torch.tensor([[0]]), 1, None)


def test_supports_only_plain_fp32_linears(model, lora_model):
    assert native.supports(model)
    assert not native.supports(lora_model.base_model.model)  # LoRA projections
    half = copy.deepcopy(model).to(torch.bfloat16)
    assert not native.supports(half)
    with torch.inference_mode():  # a LoRA model with pack=True keeps the torch packed step
        step = LlamaStep(lora_model, None, 1, 4, lin=packed_linears(lora_model.base_model.model))
        assert step._native_step() is None
        plain = LlamaStep(model, None, 1, 4)  # unpacked (pack=False): the HF-exact torch step
        assert plain._native_step() is None


def _fresh(monkeypatch, tmp_path):
    """native's module state as in a new process, building into an empty cache."""
    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setattr(native, "_why_not", None)


def test_the_library_is_built_once_per_machine_and_reused(monkeypatch, tmp_path):
    _fresh(monkeypatch, tmp_path)
    assert native.load() is not None
    built = list((tmp_path / "native").glob("lmlab_native_*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    _fresh(monkeypatch, tmp_path)
    assert native.load() is not None
    assert list((tmp_path / "native").glob("*")) == built  # no second build, no temp left
    assert built[0].stat().st_mtime_ns == stamp


@pytest.mark.parametrize("how", ["env", "no-compiler"])
def test_without_the_library_decoding_falls_back(how, model, tokenizer,
                                                               monkeypatch, tmp_path, capsys):
    _fresh(monkeypatch, tmp_path)
    if how == "env":
        monkeypatch.setenv("LMLAB_NATIVE", "0")
    else:
        monkeypatch.setattr(native.shutil, "which", lambda name: None)
    ids, mask = left_pad([tokenizer(PROMPTS[0])["input_ids"]], tokenizer.pad_token_id)
    p = SamplingParams(temperature=0, max_new_tokens=6, ignore_eos=True)
    assert decode(model, ids, mask, p, pack=True).tokens == \
        decode(model, ids, mask, p, fast=False).tokens
    assert not native.available()
    err = capsys.readouterr().err
    if how == "env":  # asked for: no notice
        assert native.why_not() == "LMLAB_NATIVE=0" and "native" not in err
    else:
        assert "the native decode step is off (no C compiler" in err
    assert not (tmp_path / "native").exists() or not list((tmp_path / "native").glob("*.so"))


def test_contrastive_search_takes_the_native_step(model, tokenizer, monkeypatch):
    """Contrastive search reads the candidates' final hidden states through a head function,
    so its k candidates per step (here 1 prompt x 4) run the C step too, with the unpacked
    search's tokens."""
    from lmlab.infer.search import contrastive_search

    calls = []
    real = native.NativeStep.step
    monkeypatch.setattr(native.NativeStep, "step",
                        lambda self, *a, **k: calls.append(k.get("hidden")) or real(self, *a, **k))
    ids, mask = left_pad([tokenizer(PROMPTS[1])["input_ids"]], tokenizer.pad_token_id)
    p = SamplingParams(max_new_tokens=8, ignore_eos=True)
    kw = {"penalty_alpha": 0.6, "top_k": 4, "params": p}
    ref = contrastive_search(model, ids, mask, **kw).tokens
    assert calls == []
    assert contrastive_search(model, ids, mask, pack=True, **kw).tokens == ref
    assert len(calls) == 8 and all(calls)  # one candidates step per token, hidden states out


@pytest.mark.parametrize("n,threads", [(32, 1), (96 * 32, 2), (1000 * 32, 3)])
def test_the_read_kernel_reads_every_value_once(n, threads):
    """``lm_read`` (the probe's bandwidth reader): its sum is the buffer's, whatever the split
    of blocks over threads (1,000 blocks do not divide by 3)."""
    x = torch.randn(n, generator=torch.Generator().manual_seed(n), dtype=torch.float32)
    got = native.load().lm_read(x.data_ptr(), n, threads)
    assert got == approx_fp32(float(x.double().sum()), sum_terms(n), float(x.abs().sum()))
    assert native.read_gbs(n * 4, threads, repeats=2) > 0


def test_the_greedy_argmax_is_numpys():
    """lm_greedy's argmax (two vector passes, a NaN handed to the plain loop): numpy's argmax,
    the first index of the largest value or of the first NaN, on ties, signed zeros, -inf,
    lengths below and off the vector width, the largest in the tail, and NaNs."""
    import numpy as np

    g = torch.Generator().manual_seed(7)
    cases = [torch.tensor(v, dtype=torch.float32) for v in (
        [1.0], [-0.0, 0.0], [0.0, -0.0, 0.0], [float("-inf")] * 9, [2.0, 5.0, 5.0, 1.0],
        [0.0] * 8 + [3.0], [1.0] * 17, [float("nan"), 4.0], [1.0] * 12 + [float("nan")] * 3,
        [1.0] * 8 + [float("nan")] + [9.0] * 8)]
    for n in (7, 8, 9, 63, 1001, 49152):
        x = torch.randn(n, generator=g)
        cases += [x, x.round(), x.clone().fill_(-1.0)]
        tail = x.clone()
        tail[-1] = 100.0
        cases.append(tail)
    lib = native.load()
    for x in cases:
        x = x.contiguous()
        assert lib.lm_argmax(x.data_ptr(), x.numel()) == int(np.argmax(x.numpy())), x[:20]


def test_the_source_compiles_for_plain_x86_64(tmp_path):
    """A CPU without AVX must still get a build (the kernels that need more are picked at run
    time); the portable run (make test-portable) builds and tests x86-64-v3."""
    import platform
    import subprocess

    cc = native._compiler()
    if cc is None or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("needs a C compiler on x86-64")
    flags = ["-march=x86-64" if f == "-march=native" else f for f in native.FLAGS]
    run = subprocess.run([cc, *flags, "-fopenmp", "-o", str(tmp_path / "n.so"),
                          str(native.SOURCE), "-lm"], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr[-2000:]


def _bf16_tol(K: int, mag: torch.Tensor) -> torch.Tensor:
    """fp32 sums of K products in some order, elementwise: fp32_tol over |w| |x|."""
    return fp32_tol(sum_terms(K)) * mag


@pytest.mark.parametrize("K,R", [(64, 48), (96, 32), (60, 40)])
def test_bf16_products_equal_their_references(K, R):
    """The bf16 product alone, 1-40 inputs, equals the exact product of the fp32 inputs up to
    fp32 sums in another order. On AMX tiles (5 or more inputs, in groups of at most 16; K a
    multiple of 32, rows in 16s, where the CPU and Linux allow) each input enters as two bf16
    parts, hi + lo, which is x within BF16_U^2 of |x| (lo's own rounding): that much of
    |w| |x| more. amx=False never takes tiles."""
    torch.manual_seed(K + R)
    w = torch.randn(R, K).bfloat16()
    wd = w.double()
    for M in [*range(1, 18), 23, 32, 40]:
        x = torch.randn(M, K)
        mag = x.double().abs() @ wd.abs().t()
        exact = x.double() @ wd.t()
        y, tiles = native.bf16_matvec(w, x)
        assert not tiles or (M >= 5 and K % 32 == 0 and R % 16 == 0)
        tol = _bf16_tol(K, mag) + (BF16_U ** 2 * mag if tiles else 0)
        assert torch.all((y.double() - exact).abs() <= tol), (M, tiles)
        y0, t0 = native.bf16_matvec(w, x, amx=False)
        assert not t0 and torch.all((y0.double() - exact).abs() <= _bf16_tol(K, mag))
        # one bf16 part alone would not do: x rounded to bf16 is off by up to BF16_U |x|
        lone = x.bfloat16().double() @ wd.t()
        assert not torch.all((lone - exact).abs() <= _bf16_tol(K, mag) + BF16_U ** 2 * mag)


def test_bf16_products_take_amx_tiles_where_granted():
    """8 or 17 inputs, K 64, 32 rows run on tiles where this machine grants them; 4 inputs,
    K 60, 40 rows, or amx=False do not. torch's own bf16 products (oneDNN, tiles of other
    shapes on the same thread) in between change nothing."""
    w, x = torch.randn(32, 64).bfloat16(), torch.randn(8, 64)
    first, tiles = native.bf16_matvec(w, x)
    if not tiles:
        pytest.skip("no AMX tiles here (CPU, compiler or Linux)")
    a = torch.randn(256, 512).bfloat16()
    prod = a @ a.t()
    assert torch.equal(native.bf16_matvec(w, x)[0], first)
    assert torch.equal(a @ a.t(), prod)
    assert native.bf16_matvec(w, torch.randn(17, 64))[1]
    for ww, xx in [(w, x[:4]), (w[:, :60], x[:, :60]),
                   (torch.randn(40, 64).bfloat16(), x)]:
        assert not native.bf16_matvec(ww, xx)[1]
    assert not native.bf16_matvec(w, x, amx=False)[1]


def test_a_bf16_step_on_amx_tiles_equals_the_fma_step(model, monkeypatch):
    """A bf16 step over 8 tokens (tiny:llama: widths 64 and 128, rows in 16s) with tiles
    allowed and with LMLAB_NATIVE_AMX=0: logits and cache writes equal up to fp32 rounding
    (TOL) and the inputs' hi + lo split, BF16_U^2 of each product's magnitude at each of the
    9 products on the longest path (4 a layer, then the head), in the fp32 bound's form
    (tests/tolerance.py: 4 x 9 BF16_U^2 of the largest output); not bit for bit."""
    w, x = torch.randn(32, 64).bfloat16(), torch.randn(8, 64)
    if not native.bf16_matvec(w, x)[1]:
        pytest.skip("no AMX tiles here (CPU, compiler or Linux)")
    ids = torch.randint(0, model.config.vocab_size, (1, 8),
                        generator=torch.Generator().manual_seed(1))
    pos = torch.arange(8)[None]
    out = {}
    for amx in ("1", "0"):
        monkeypatch.setenv("LMLAB_NATIVE_AMX", amx)
        with torch.inference_mode():
            st = LlamaStep(model, None, 1, 12, lin=packed_linears(model), native_bf16=True)
            out[amx] = (st.step(ids, pos, 8, None), st)
    (on, s_on), (off, s_off) = out["1"], out["0"]
    tol = TOL + 4 * 9 * BF16_U ** 2
    _close(on, off, tol)
    for a, b in zip(s_off.k + s_off.v, s_on.k + s_on.v):
        _close(b[:, :, :8], a[:, :, :8], tol)
    assert not torch.equal(on, off)
