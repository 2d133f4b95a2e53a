"""oneDNN-packed projections (infer.packed): the same products as F.linear up to fp32
rounding, repacked when a weight changes in place, and LoRA models decoding through the lean
step equal to the HF forward (adapters on, and off as the reference)."""

import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F

from lmlab.infer import native
from lmlab.infer.decode import decode, left_pad
from lmlab.infer.fastpath import LlamaStep
from lmlab.infer.packed import PackedLinears, can_pack, packed_linears
from lmlab.infer.sampling import SamplingParams
from tests.tolerance import forward_tol

PROMPTS = ["Hello there, how are", "The quick brown fox jumps over the lazy dog and then", "A"]

pytestmark = pytest.mark.skipif(not can_pack(torch.zeros(2, 2)),
                                reason="this torch build has no oneDNN (torch.backends.mkldnn)")


def test_packed_linear_equals_f_linear_and_follows_in_place_updates():
    torch.manual_seed(0)
    mod = torch.nn.Linear(48, 96, bias=False)
    lin = PackedLinears()
    for rows in (1, 3, 17):
        x = torch.randn(2, rows, 48)
        torch.testing.assert_close(lin(x, mod), F.linear(x, mod.weight), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        mod.weight.mul_(-2.0)  # what an optimizer step does: in place, version bumped
    x = torch.randn(4, 48)
    torch.testing.assert_close(lin(x, mod), F.linear(x, mod.weight), rtol=1e-5, atol=1e-6)
    assert lin.count == 1 and copy.deepcopy(lin).count == 0  # copies repack on use
    biased = torch.nn.Linear(48, 8)  # not packed: falls back to the module's weight
    torch.testing.assert_close(lin(x, biased), F.linear(x, biased.weight))
    assert lin.count == 1


def test_lora_model_decodes_through_the_packed_lean_step(lora_model, model, tokenizer):
    ids, mask = left_pad([tokenizer(p)["input_ids"] for p in PROMPTS], tokenizer.pad_token_id)
    p = SamplingParams(temperature=0, max_new_tokens=10, ignore_eos=True)
    assert LlamaStep.supports(lora_model, lora=True) and not LlamaStep.supports(lora_model)
    hf = decode(lora_model, ids, mask, p, fast=False).tokens
    packed = decode(lora_model, ids, mask, p, pack=True).tokens
    assert packed == hf
    lin = packed_linears(lora_model.base_model.model)
    assert lin.count == 7 * model.config.num_hidden_layers + 1  # folded W + sBA, LM head
    base = decode(model, ids, mask, p, fast=False).tokens
    assert base != hf  # the adapters matter here
    with lora_model.disable_adapter():  # the reference of a LoRA policy
        assert decode(lora_model, ids, mask, p, pack=True).tokens == base
    with torch.no_grad():  # an optimizer step on the adapters: the folded copy is remade
        for name, q in lora_model.named_parameters():
            if "lora_B" in name:
                q.mul_(-1.0)
    hf2 = decode(lora_model, ids, mask, p, fast=False).tokens
    assert hf2 != hf and decode(lora_model, ids, mask, p, pack=True).tokens == hf2
    s = SamplingParams(temperature=1.0, max_new_tokens=10, ignore_eos=True)
    a = decode(lora_model, ids, mask, s, fast=False, generator=torch.Generator().manual_seed(3))
    b = decode(lora_model, ids, mask, s, pack=True, generator=torch.Generator().manual_seed(3))
    assert a.tokens == b.tokens


@pytest.mark.parametrize("c_step", [True, False])
def test_speculative_and_generate_with_packed_weights(model, tokenizer, c_step):
    """Greedy through packed weights: plain, prompt lookup and a draft model give the tokens
    of plain greedy without packing (the draft: the model itself truncated to 1 layer); with
    the C step off, every step runs the oneDNN-packed copies."""
    from lmlab.infer.decode import generate
    from lmlab.infer.speculative import generate_speculative

    model = copy.deepcopy(model)  # no packed copies yet
    p = SamplingParams(temperature=0, max_new_tokens=12, ignore_eos=True)
    prompts = ["the the the cat sat on the mat and the the", "A b c a b c a b"]
    ref = [c.token_ids for c in generate(model, tokenizer, prompts, p, fast=False)]
    with contextlib.nullcontext() if c_step else native.off():
        assert [c.token_ids for c in generate(model, tokenizer, prompts, p, pack=True)] == ref
        draft = copy.deepcopy(model)
        draft.model.layers = draft.model.layers[:1]
        draft.config.num_hidden_layers = 1
        for d in (None, draft):
            res = generate_speculative(model, tokenizer, prompts, p, draft=d,
                                       num_draft_tokens=3, pack=True)
            assert [c.token_ids for c in res.completions] == ref
            assert res.stats.target_forwards > 0
    if not c_step:
        assert packed_linears(model).count == 7 * model.config.num_hidden_layers + 1


def test_packed_prefill_runs_through_the_lean_step_and_matches_the_hf_prefill(model, tokenizer):
    """With pack=True the prompt goes through LlamaStep (left padding included: a padding query
    attends to itself, never to nothing); its next-token logits equal the HF
    prefill's up to fp32 rounding, and no HF forward runs at all."""
    from lmlab.infer.decode import stream_tokens

    ids, mask = left_pad([tokenizer(p)["input_ids"] for p in PROMPTS], tokenizer.pad_token_id)
    p = SamplingParams(temperature=0, max_new_tokens=4, ignore_eos=True)
    ref = [s.logits for s in stream_tokens(model, ids, mask, p, fast=False)]
    calls = []
    hook = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        got = [s.logits for s in stream_tokens(model, ids, mask, p, pack=True)]
    finally:
        hook.remove()
    assert calls == []  # neither the prefill nor the steps used the HF forward
    assert len(got) == len(ref) == 4
    for a, b in zip(got, ref):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=0, atol=forward_tol(model.config, ids.shape[1] + 4)
                                   * float(b.abs().max()))


def test_fused_projections_equal_the_separate_ones_and_follow_updates(model, tokenizer):
    """q/k/v (and gate/up) through one packed copy of their stacked weights: the outputs side by
    side equal F.linear of each; an in-place update is picked up; a biased module declines; the
    lean step uses the stacked copies."""
    torch.manual_seed(0)
    a, b = torch.nn.Linear(48, 96, bias=False), torch.nn.Linear(48, 32, bias=False)
    lin = PackedLinears()
    x = torch.randn(3, 5, 48)
    torch.testing.assert_close(lin.fused(x, (a, b)), torch.cat(
        [F.linear(x, a.weight), F.linear(x, b.weight)], -1), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        b.weight.mul_(-3.0)
    torch.testing.assert_close(lin.fused(x, (a, b))[..., 96:], F.linear(x, b.weight),
                               rtol=1e-5, atol=1e-6)
    assert lin.fused(x, (a, torch.nn.Linear(48, 8))) is None and lin.count == 2
    m = copy.deepcopy(model)
    ids, mask = left_pad([tokenizer(p)["input_ids"] for p in PROMPTS], tokenizer.pad_token_id)
    decode(m, ids, mask, SamplingParams(temperature=0, max_new_tokens=3), pack=True)
    stacked = [k for k in packed_linears(m).packed if isinstance(k, tuple)]
    assert len(stacked) == 2 * m.config.num_hidden_layers


def test_packed_decode_takes_the_few_calls_layer_loop(model, tokenizer, monkeypatch):
    """With packed weights (and the C step off, ``infer.native``) the prefill and every decode
    step run ``_packed_layers`` (the few-calls layer loop); the tokens stay plain greedy's (left
    padding included)."""
    calls = []
    orig = LlamaStep._packed_layers
    monkeypatch.setattr(LlamaStep, "_packed_layers",
                        lambda self, x, *a: calls.append(x.shape[1]) or orig(self, x, *a))
    ids, mask = left_pad([tokenizer(p)["input_ids"] for p in PROMPTS], tokenizer.pad_token_id)
    p = SamplingParams(temperature=0, max_new_tokens=5, ignore_eos=True)
    ref = decode(model, ids, mask, p, fast=False).tokens
    assert calls == []
    with native.off():
        assert decode(model, ids, mask, p, pack=True).tokens == ref
    assert calls[0] == ids.shape[1] and calls[1:] == [1] * 4  # prefill, then 4 one-token steps


def test_pinned_checks_a_copy_once_per_decode():
    """A pinned view keeps the copy it found first (one decode: weights fixed); the next
    pinned view (the next decode) sees an in-place update."""
    torch.manual_seed(0)
    a = torch.nn.Linear(16, 8, bias=False)
    lin, x = PackedLinears(), torch.randn(2, 16)
    first = lin.pinned()
    before = first(x, a)
    with torch.no_grad():
        a.weight.mul_(2.0)
    torch.testing.assert_close(first(x, a), before)  # pinned: not re-checked
    torch.testing.assert_close(lin.pinned()(x, a), 2 * before, rtol=1e-5, atol=1e-6)
