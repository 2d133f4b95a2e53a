"""The KV-cache decode loop: parity with HF generate, cache == recomputation, stops, errors."""

import pytest
import torch

from lmlab.errors import UserError
from lmlab.infer.decode import decode, eval_mode, generate, left_pad, stream, stream_tokens
from lmlab.infer.sampling import SamplingParams

PROMPTS = ["Hello there, how are", "The quick brown fox jumps over the lazy dog and then",
           "A", "def add(a, b):\n    return"]


def batch(tokenizer, prompts=PROMPTS):
    return left_pad([tokenizer(p)["input_ids"] for p in prompts], tokenizer.pad_token_id)


def hf_rows(out, P, eos):
    rows = []
    for r in out[:, P:].tolist():
        rows.append(r[:r.index(eos) + 1] if eos in r else r)
    return rows


def test_greedy_matches_hf_generate_batched_left_padded(model, tokenizer):
    ids, mask = batch(tokenizer)
    assert len(set(mask.sum(-1).tolist())) == len(PROMPTS)  # all different lengths
    hf = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=24,
                        pad_token_id=tokenizer.pad_token_id)
    ours = decode(model, ids, mask, SamplingParams(temperature=0, max_new_tokens=24))
    assert ours.tokens == hf_rows(hf, ids.shape[1], tokenizer.eos_token_id)
    assert len({tuple(t[:8]) for t in ours.tokens}) == len(PROMPTS)  # not degenerate


def test_greedy_matches_hf_with_early_eos(model, tokenizer):
    """Pick as EOS a token one row emits early: that row stops, leaves the batch, and the
    remaining rows still match HF (which keeps padding the finished row)."""
    ids, mask = batch(tokenizer)
    free = decode(model, ids, mask, SamplingParams(temperature=0, max_new_tokens=12,
                                                   ignore_eos=True))
    eos = free.tokens[1][3]
    hf = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=12,
                        pad_token_id=tokenizer.pad_token_id, eos_token_id=eos)
    ours = decode(model, ids, mask, SamplingParams(temperature=0, max_new_tokens=12),
                  eos_token_ids=[eos])
    assert ours.tokens == hf_rows(hf, ids.shape[1], eos)
    assert ours.finish_reasons[1] == "eos" and len(ours.tokens[1]) <= 4
    assert "length" in ours.finish_reasons


def test_kv_cache_logits_equal_full_recomputation(model, tokenizer):
    """At every step the cached one-token forward gives the logits a full forward over
    prompt + generated tokens gives. Tolerance: atol 2e-4 on logits of magnitude up to ~20 (fp32
    round-off from different matmul shapes; measured max |diff| 5e-5)."""
    ids, mask = batch(tokenizer)
    P = ids.shape[1]
    gen = torch.empty(len(PROMPTS), 0, dtype=torch.long)
    for step in stream_tokens(model, ids, mask, SamplingParams(temperature=0, max_new_tokens=10,
                                                               ignore_eos=True)):
        full_ids = torch.cat([ids, gen], 1)
        full_mask = torch.cat([mask, torch.ones_like(gen)], 1)
        pos = (full_mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            ref = model(input_ids=full_ids, attention_mask=full_mask,
                        position_ids=pos).logits[:, -1]
        torch.testing.assert_close(step.logits, ref, atol=2e-4, rtol=1e-5)
        gen = torch.cat([gen, torch.tensor(step.tokens)[:, None]], 1)
    assert gen.shape[1] == 10 and P > 0


def test_logprobs_raw_and_processed(model, tokenizer):
    ids, mask = batch(tokenizer, PROMPTS[:2])
    d = decode(model, ids, mask, SamplingParams(temperature=0, max_new_tokens=5, logprobs=True,
                                                ignore_eos=True))
    full = torch.cat([ids, torch.tensor(d.tokens)], 1)
    fmask = torch.cat([mask, torch.ones(2, 5, dtype=torch.long)], 1)
    with torch.no_grad():
        lp = model(input_ids=full, attention_mask=fmask,
                   position_ids=(fmask.cumsum(-1) - 1).clamp(min=0)).logits.log_softmax(-1)
    P = ids.shape[1]
    ref = lp[:, P - 1:-1].gather(-1, torch.tensor(d.tokens)[..., None]).squeeze(-1)
    torch.testing.assert_close(torch.tensor(d.logprobs), ref, atol=1e-4, rtol=0)
    p = SamplingParams(temperature=0.5, top_k=1, max_new_tokens=3, logprobs=True,
                       logprobs_mode="processed", ignore_eos=True, seed=0)
    assert all(v == pytest.approx(0.0, abs=1e-6) for row in decode(model, ids, mask, p).logprobs
               for v in row)  # top_k=1 leaves one token with probability 1


def test_stop_string_spanning_tokens(model, tokenizer):
    free = generate(model, tokenizer, [PROMPTS[0]], SamplingParams(temperature=0,
                                                                   max_new_tokens=16))[0]
    pieces = [tokenizer.decode([t]) for t in free.token_ids]
    start = len(pieces[0]) + len(pieces[1]) + len(pieces[2]) - 1  # last char of token 2,
    stop = free.text[start:start + 1 + len(pieces[3]) + 1]  # all of token 3, 1 char of token 4
    got = generate(model, tokenizer, [PROMPTS[0]], SamplingParams(temperature=0,
                                                                  max_new_tokens=16, stop=[stop]))
    assert got[0].finish_reason == "stop"
    assert got[0].text == free.text[:free.text.find(stop)]
    assert got[0].token_ids == free.token_ids[:5]


def test_stream_matches_generate(model, tokenizer):
    p = SamplingParams(temperature=0, max_new_tokens=12, stop=["e"])
    done = generate(model, tokenizer, PROMPTS, p, batch_size=2)
    texts, reasons = [""] * len(PROMPTS), [None] * len(PROMPTS)
    for d in stream(model, tokenizer, PROMPTS, p):
        assert reasons[d.index] is None  # nothing after the last piece
        texts[d.index] += d.text
        reasons[d.index] = d.finish_reason
    assert texts == [c.text for c in done]
    assert reasons == [c.finish_reason for c in done]
    assert all("e" not in t for t in texts)


def test_text_stream_never_shows_what_a_stop_string_cuts(tokenizer):
    from lmlab.infer.decode import StopStrings, TextStream, completion_text

    ids = tokenizer("Héllo wörld. The end STOP and more text",
                    add_special_tokens=False)["input_ids"]
    stops = StopStrings(tokenizer, ["STOP", "wörld!"])
    final = completion_text(tokenizer, ids, "stop", stops)
    assert final == "Héllo wörld. The end "
    ts, shown = TextStream(tokenizer, stops), ""
    for n, t in enumerate(ids):  # as the loops do: the token completing a stop string ends it
        if stops.hit(ts.tokens + [t]):
            break
        shown += ts.push([t])
        assert final.startswith(shown)  # never more than the text keeps
    assert len(shown) < len(final)  # " wörld" and the text that might start "STOP": held
    shown += ts.finish("stop", [ids[n]])
    assert shown == final
    plain = TextStream(tokenizer, StopStrings(tokenizer, []))
    assert "".join(plain.push([t]) for t in ids) + plain.finish("length") == tokenizer.decode(ids)


def test_sampling_is_seeded_and_batch_order_free(model, tokenizer):
    p = SamplingParams(temperature=0.8, top_p=0.9, max_new_tokens=8, seed=3)
    a = generate(model, tokenizer, PROMPTS, p)
    b = generate(model, tokenizer, PROMPTS, p)
    assert [c.token_ids for c in a] == [c.token_ids for c in b]
    c = generate(model, tokenizer, PROMPTS, SamplingParams(temperature=0.8, max_new_tokens=8,
                                                           seed=4))
    assert [x.token_ids for x in a] != [x.token_ids for x in c]


@pytest.mark.parametrize("kw", [{"fast": False}, {}, {"pack": True}])
def test_repeat_prefills_each_prompt_once_and_equals_repeated_prompts(model, tokenizer, kw):
    """repeat=k: row b*k+j is prompt b's j-th sample; the same tokens (greedy, and sampled from
    the same generator) as decoding every prompt k times, and k early-stopping rows each."""
    if kw.get("pack"):
        from lmlab.infer.packed import can_pack
        if not can_pack(torch.zeros(2, 2)):
            pytest.skip("no oneDNN")
    seqs = [tokenizer(p)["input_ids"] for p in ["Hello there", "One two three four five"]]
    ids, mask = left_pad(seqs, tokenizer.pad_token_id)
    rids, rmask = left_pad([s for s in seqs for _ in range(3)], tokenizer.pad_token_id)
    for p in (SamplingParams(temperature=0, max_new_tokens=6, ignore_eos=True),
              SamplingParams(temperature=1.0, max_new_tokens=6, stop_token_ids=[5, 9, 11])):
        a = decode(model, ids, mask, p, repeat=3, generator=torch.Generator().manual_seed(0), **kw)
        b = decode(model, rids, rmask, p, generator=torch.Generator().manual_seed(0), **kw)
        assert len(a.tokens) == 6 and a.tokens == b.tokens
        assert a.finish_reasons == b.finish_reasons
    assert len({tuple(t) for t in a.tokens}) > 2  # sampled copies differ from each other
    with pytest.raises(UserError, match="repeat"):
        decode(model, ids, mask, p, repeat=0)


def test_generate_repeat_gives_k_completions_per_prompt_in_prompt_order(model, tokenizer):
    """generate(repeat=k): prompt-major k completions each; greedy copies equal the plain
    completion, whatever the batch size (prompts of different lengths are reordered inside)."""
    greedy = SamplingParams(temperature=0, max_new_tokens=5, ignore_eos=True)
    plain = generate(model, tokenizer, PROMPTS, greedy)
    for bs in (1, 4, 8):
        rep = generate(model, tokenizer, PROMPTS, greedy, repeat=3, batch_size=bs)
        assert len(rep) == 3 * len(PROMPTS)
        for i, c in enumerate(plain):
            assert [r.token_ids for r in rep[3 * i:3 * i + 3]] == [c.token_ids] * 3
            assert all(r.prompt == c.prompt for r in rep[3 * i:3 * i + 3])
    s = generate(model, tokenizer, PROMPTS[:1], SamplingParams(temperature=1.0, max_new_tokens=6,
                                                               seed=0), repeat=4)
    assert len({tuple(c.token_ids) for c in s}) > 1  # sampled copies differ
    with pytest.raises(UserError, match="repeat"):
        generate(model, tokenizer, PROMPTS, greedy, repeat=0)


def test_chat_prompts_use_the_template(model, tokenizer):
    msgs = [{"role": "user", "content": "Say hi"}]
    c = generate(model, tokenizer, [msgs], SamplingParams(temperature=0, max_new_tokens=3))[0]
    templ = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert c.prompt_tokens == len(tokenizer(templ, add_special_tokens=False)["input_ids"])
    assert templ.endswith("assistant\n")


def test_min_new_tokens_and_max_new_tokens(model, tokenizer):
    ids, mask = batch(tokenizer, PROMPTS[:1])
    first = decode(model, ids, mask, SamplingParams(temperature=0, max_new_tokens=1)).tokens[0][0]
    d = decode(model, ids, mask, SamplingParams(temperature=0, max_new_tokens=6,
                                                min_new_tokens=3), eos_token_ids=[first])
    assert len(d.tokens[0]) >= 3 and d.tokens[0][0] != first
    assert decode(model, ids, mask, SamplingParams(max_new_tokens=0)).tokens == [[]]


def test_too_long_prompt_fails_before_any_work(tokenizer, monkeypatch):
    from lmlab.models import load_model

    m = load_model("tiny:llama")
    m.config.max_position_embeddings = 16
    monkeypatch.setattr(m, "forward", lambda *a, **k: pytest.fail("model was run"))
    with pytest.raises(UserError, match="context of 16"):
        generate(m, tokenizer, ["word " * 20], SamplingParams(max_new_tokens=1))
    with pytest.raises(UserError, match="max_new_tokens=20"):
        generate(m, tokenizer, ["hi"], SamplingParams(max_new_tokens=20))


def test_bad_prompts_are_user_errors(model, tokenizer):
    with pytest.raises(UserError, match="prompts"):
        generate(model, tokenizer, "not a list")
    with pytest.raises(UserError, match=r"prompts\[1\]"):
        generate(model, tokenizer, ["ok", 3])
    with pytest.raises(UserError, match="stop"):
        ids, mask = batch(tokenizer, PROMPTS[:1])
        decode(model, ids, mask, SamplingParams(stop=["x"], max_new_tokens=2))  # no tokenizer


@pytest.mark.slow
def test_real_model_greedy_matches_hf():
    from lmlab.models import load_model, load_tokenizer

    tok = load_tokenizer("smollm2-135m-instruct")
    m = load_model("smollm2-135m-instruct").eval()
    prompts = [[{"role": "user", "content": "What is the capital of France?"}],
               [{"role": "user", "content": "Write a haiku about the sea."}]]
    texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
             for p in prompts]
    ids, mask = left_pad([tok(t, add_special_tokens=False)["input_ids"] for t in texts],
                         tok.pad_token_id)
    hf = m.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=40,
                    pad_token_id=tok.pad_token_id)
    ours = generate(m, tok, prompts, SamplingParams(temperature=0, max_new_tokens=40))
    assert [c.token_ids for c in ours] == hf_rows(hf, ids.shape[1], tok.eos_token_id)


def test_eval_mode_switches_and_restores_each_module(model, tokenizer):
    """Decoding runs in eval mode and gives every module back its own mode (a model in
    training, and one whose top is in eval but one layer is training); a model already in
    eval mode is left untouched (no ``train()`` walk)."""
    import copy

    m = copy.deepcopy(model)
    ids = torch.tensor([tokenizer("Hello there")["input_ids"]])
    p = SamplingParams(temperature=0, max_new_tokens=3, ignore_eos=True)
    want = decode(model.eval(), ids, None, p).tokens
    m.train()
    m.model.layers[0].eval()  # a mixed model: each module keeps its mode
    before = [x.training for x in m.modules()]
    seen = []
    hook = m.model.layers[1].register_forward_pre_hook(lambda mod, a: seen.append(mod.training))
    assert decode(m, ids, None, p, fast=False).tokens == want  # the HF forward: hooks run
    hook.remove()
    assert seen and not any(seen)
    assert [x.training for x in m.modules()] == before
    m.eval()
    calls = []
    m.train = lambda mode=True: calls.append(mode)  # would be called to switch modes
    with eval_mode(m):
        pass
    assert calls == []
