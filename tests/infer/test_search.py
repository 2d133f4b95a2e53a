"""Beam search == HF generate(num_beams); contrastive search == a naive reference; best-of-N."""

import contextlib
import copy

import pytest
import torch

from lmlab.errors import UserError
from lmlab.infer.decode import decode, left_pad
from lmlab.infer.packed import can_pack, packed_linears
from lmlab.infer.sampling import SamplingParams
from lmlab.infer.search import beam_search, best_of_n, contrastive_search, generate_beam

PROMPTS = ["Hello there, how are", "The quick brown fox jumps over the lazy dog and then",
           "A", "def add(a, b):\n    return"]


def batch(tokenizer, prompts=PROMPTS):
    return left_pad([tokenizer(p)["input_ids"] for p in prompts], tokenizer.pad_token_id)


def hf_beam(model, ids, mask, eos: list[int], **kw):
    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                         eos_token_id=eos or None, pad_token_id=2, **kw)
    rows = []
    for r in out[:, ids.shape[1]:].tolist():
        end = next((i for i, t in enumerate(r) if t in eos), None)
        rows.append(r if end is None else r[:end + 1])
    return rows


def likely_eos(model, ids, mask):
    """Tokens greedy emits 3rd and 4th, used as EOS ids so that beams really finish at
    different times (and several EOS ids widen the candidate set, as in HF)."""
    free = decode(model, ids, mask, SamplingParams(temperature=0, max_new_tokens=4,
                                                   ignore_eos=True))
    return sorted({row[i] for row in free.tokens for i in (2, 3)})


@pytest.mark.parametrize("num_beams,length_penalty,early_stopping",
                         [(2, 1.0, False), (4, 1.0, False), (3, 0.0, True), (4, 2.0, "never"),
                          (3, -1.0, False)])
def test_beam_search_matches_hf(model, tokenizer, num_beams, length_penalty, early_stopping):
    ids, mask = batch(tokenizer)
    eos = likely_eos(model, ids, mask)
    kw = dict(num_beams=num_beams, length_penalty=length_penalty, early_stopping=early_stopping)
    hf = hf_beam(model, ids, mask, eos, max_new_tokens=10, **kw)
    ours = beam_search(model, ids, mask, params=SamplingParams(max_new_tokens=10),
                       eos_token_ids=eos, **kw)
    assert [h[0].tokens for h in ours] == hf
    reasons = {h[0].finish_reason for h in ours}
    assert reasons == ({"length"} if length_penalty > 1 else {"eos", "length"})


def test_beam_search_returns_sorted_hypotheses_and_scores(model, tokenizer):
    ids, mask = batch(tokenizer, PROMPTS[:2])
    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, num_beams=3,
                         num_return_sequences=3, max_new_tokens=6, eos_token_id=None,
                         pad_token_id=2, output_scores=True, return_dict_in_generate=True)
    ours = beam_search(model, ids, mask, num_beams=3, num_return_sequences=3,
                       params=SamplingParams(max_new_tokens=6, ignore_eos=True))
    hf_tokens = out.sequences[:, ids.shape[1]:].tolist()
    assert [h.tokens for hs in ours for h in hs] == hf_tokens
    torch.testing.assert_close(torch.tensor([h.score for hs in ours for h in hs]),
                               out.sequences_scores, atol=1e-4, rtol=0)


def test_beam_search_with_repetition_penalty_matches_hf(model, tokenizer):
    ids, mask = batch(tokenizer, PROMPTS[:2])
    hf = hf_beam(model, ids, mask, [], num_beams=3, max_new_tokens=8, repetition_penalty=1.5)
    ours = beam_search(model, ids, mask, num_beams=3, eos_token_ids=[],
                       params=SamplingParams(max_new_tokens=8, repetition_penalty=1.5))
    assert [h[0].tokens for h in ours] == hf


def test_one_beam_is_greedy(model, tokenizer):
    ids, mask = batch(tokenizer)
    p = SamplingParams(temperature=0, max_new_tokens=8)
    assert [h[0].tokens for h in beam_search(model, ids, mask, num_beams=1, params=p)] == \
        decode(model, ids, mask, p).tokens


def test_beam_text_api(model, tokenizer):
    c = generate_beam(model, tokenizer, PROMPTS[:3], num_beams=2,
                      params=SamplingParams(max_new_tokens=5))
    assert len(c) == 3 and all(len(x.token_ids) <= 5 and isinstance(x.text, str) for x in c)


@pytest.mark.parametrize("kw,field", [({"num_beams": 0}, "num_beams"),
                                      ({"early_stopping": "sometimes"}, "early_stopping"),
                                      ({"num_beams": 2, "num_return_sequences": 3},
                                       "num_return_sequences")])
def test_bad_beam_settings(model, tokenizer, kw, field):
    ids, mask = batch(tokenizer, PROMPTS[:1])
    with pytest.raises(UserError, match=field):
        beam_search(model, ids, mask, **kw)


def naive_contrastive(model, ids, alpha, k, n):
    """Full recomputation, one prompt, no cache, written straight from Su et al. 2022."""
    seq = ids[0].tolist()
    for _ in range(n):
        with torch.no_grad():
            out = model(torch.tensor([seq]), output_hidden_states=True)
        probs = out.logits[0, -1].softmax(-1)
        ctx = out.hidden_states[-1][0]  # (T, D)
        top_p, top_ids = probs.topk(k)
        scores = []
        for p, v in zip(top_p.tolist(), top_ids.tolist()):
            with torch.no_grad():
                h = model(torch.tensor([seq + [v]]), output_hidden_states=True).hidden_states[-1][
                    0, -1]
            sim = torch.nn.functional.cosine_similarity(h[None], ctx, dim=-1).max().item()
            scores.append((1 - alpha) * p - alpha * sim)
        seq.append(top_ids[max(range(k), key=lambda i: scores[i])].item())
    return seq[ids.shape[1]:]


def test_contrastive_matches_naive_reference(model, tokenizer):
    ids, mask = batch(tokenizer)
    got = contrastive_search(model, ids, mask, penalty_alpha=0.6, top_k=4,
                             params=SamplingParams(max_new_tokens=6, ignore_eos=True))
    for i, p in enumerate(PROMPTS):
        one = torch.tensor([tokenizer(p)["input_ids"]])
        assert got.tokens[i] == naive_contrastive(model, one, 0.6, 4, 6), p
    greedy = decode(model, ids, mask, SamplingParams(temperature=0, max_new_tokens=6,
                                                     ignore_eos=True)).tokens
    assert got.tokens != greedy  # the penalty changed something


def test_contrastive_alpha_zero_is_greedy(model, tokenizer):
    ids, mask = batch(tokenizer)
    p = SamplingParams(max_new_tokens=8, ignore_eos=True)
    got = contrastive_search(model, ids, mask, penalty_alpha=0.0, top_k=3, params=p)
    assert got.tokens == decode(model, ids, mask, SamplingParams(temperature=0, max_new_tokens=8,
                                                                 ignore_eos=True)).tokens
    with pytest.raises(UserError, match="penalty_alpha"):
        contrastive_search(model, ids, mask, penalty_alpha=1.5)


def test_best_of_n_picks_the_reranker_favourite(model, tokenizer):
    prompts = PROMPTS[:2]
    res = best_of_n(model, tokenizer, prompts, 4, lambda p, c: c.count("e"),
                    SamplingParams(max_new_tokens=10, seed=0))
    for r in res:
        assert len(r.candidates) == 4 and len(r.scores) == 4
        assert r.best.text.count("e") == max(r.scores)
        assert len({c.text for c in r.candidates}) > 1  # really different samples
    with pytest.raises(UserError, match="reranker"):
        best_of_n(model, tokenizer, prompts, 2, None)


def test_contrastive_lean_step_equals_hf_forward(model, tokenizer):
    """The lean step (default) and the HF forward (fast=False) give the same tokens; the
    lean step's hidden states are the LM head's input, HF's hidden_states[-1]."""
    ids, mask = batch(tokenizer)
    p = SamplingParams(max_new_tokens=8, ignore_eos=True)
    hf = contrastive_search(model, ids, mask, penalty_alpha=0.6, top_k=3, params=p, fast=False)
    assert contrastive_search(model, ids, mask, penalty_alpha=0.6, top_k=3,
                              params=p).tokens == hf.tokens


@pytest.mark.skipif(not can_pack(torch.zeros(2, 2)), reason="no oneDNN in this torch build")
@pytest.mark.parametrize("c_step", [True, False])
def test_search_strategies_with_packed_weights(model, tokenizer, c_step):
    """pack=True runs beam and contrastive search through packed weights with the tokens of
    the unpacked search; best-of-N with a seed draws the same samples. With the C step off,
    every projection runs its oneDNN-packed copy."""
    from lmlab.infer import native

    ids, mask = batch(tokenizer)
    p = SamplingParams(max_new_tokens=8, ignore_eos=True)
    kw = dict(penalty_alpha=0.6, top_k=3, params=p)
    s = SamplingParams(max_new_tokens=8, seed=0, ignore_eos=True)
    rerank = lambda p, c: c.count("e")  # noqa: E731
    m = copy.deepcopy(model)  # a fresh model: no packed copies yet
    beam = [h[0].tokens for h in beam_search(m, ids, mask, num_beams=3, params=p)]
    ref = contrastive_search(m, ids, mask, **kw).tokens
    a = best_of_n(m, tokenizer, PROMPTS[:2], 3, rerank, s)
    assert packed_linears(m).count == 0
    full = 7 * m.config.num_hidden_layers + 1
    with contextlib.nullcontext() if c_step else native.off():
        m = copy.deepcopy(model)
        assert [h[0].tokens for h in beam_search(m, ids, mask, num_beams=3, params=p,
                                                 pack=True)] == beam
        assert c_step or packed_linears(m).count == full
        m = copy.deepcopy(model)
        assert contrastive_search(m, ids, mask, pack=True, **kw).tokens == ref
        assert c_step or packed_linears(m).count == full
        m = copy.deepcopy(model)
        b = best_of_n(m, tokenizer, PROMPTS[:2], 3, rerank, s, pack=True)
        assert [[c.token_ids for c in r.candidates] for r in b] == \
            [[c.token_ids for c in r.candidates] for r in a]
        assert c_step or packed_linears(m).count == full


@pytest.mark.skipif(not can_pack(torch.zeros(2, 2)), reason="no oneDNN in this torch build")
def test_lora_model_searches_through_the_packed_lean_step(model, lora_model, tokenizer):
    """A peft LoRA model: beam and contrastive search with pack=True (folded W + sBA through
    the lean step) give the tokens of its HF forward (fast=False)."""
    peft = lora_model
    ids, mask = batch(tokenizer)
    p = SamplingParams(max_new_tokens=6, ignore_eos=True)
    hf = [h[0].tokens for h in beam_search(peft, ids, mask, num_beams=3, params=p, fast=False)]
    assert [h[0].tokens for h in beam_search(model, ids, mask, num_beams=3, params=p)] != hf
    assert [h[0].tokens for h in beam_search(peft, ids, mask, num_beams=3, params=p,
                                             pack=True)] == hf
    kw = dict(penalty_alpha=0.6, top_k=3, params=p)
    assert contrastive_search(peft, ids, mask, pack=True, **kw).tokens == \
        contrastive_search(peft, ids, mask, fast=False, **kw).tokens
    assert packed_linears(peft.base_model.model).count == 7 * model.config.num_hidden_layers + 1


@pytest.mark.slow
def test_real_model_beam_search_matches_hf():
    from lmlab.models import load_model, load_tokenizer

    tok = load_tokenizer("smollm2-135m-instruct")
    m = load_model("smollm2-135m-instruct").eval()
    texts = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                     add_generation_prompt=True)
             for q in ("Name three colours.", "What is 2 + 2? Answer briefly.")]
    ids, mask = left_pad([tok(t, add_special_tokens=False)["input_ids"] for t in texts],
                         tok.pad_token_id)
    hf = hf_beam(m, ids, mask, [tok.eos_token_id], num_beams=3, max_new_tokens=24)
    ours = beam_search(m, ids, mask, num_beams=3, params=SamplingParams(max_new_tokens=24),
                       eos_token_ids=[tok.eos_token_id])
    assert [h[0].tokens for h in ours] == hf
