"""Speculative decoding: greedy == plain greedy; sampling follows the target distribution."""

import itertools

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lmlab.errors import UserError
from lmlab.infer import native
from lmlab.infer.decode import decode, generate
from lmlab.infer.sampling import SamplingParams
from lmlab.infer.speculative import DraftModel, PromptLookup, _verify, check_same_vocab, \
    generate_speculative, replay_rounds, speculative_decode
from lmlab.models import load_model

from .conftest import varied

PROMPT = "The quick brown fox jumps over the lazy dog and then"


def draft_like(target, noise: float, seed: int = 5):
    """A ``tiny:llama4`` draft (a different preset, same vocabulary) that shares the target's
    embeddings and first two layers; its two extra layers add noise of size ``noise`` to the
    residual stream, so it agrees with the target often but not always."""
    d = load_model("tiny:llama4")
    sd = target.state_dict()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in d.named_parameters():
            if n in sd:
                p.copy_(sd[n])
            elif p.dim() == 2:
                std = noise if ("o_proj" in n or "down_proj" in n) else 0.5
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return d.eval()


@pytest.mark.parametrize("noise,k,fast", [(0.05, 4, None), (0.1, 2, None), (0.3, 6, None),
                                          (0.1, 3, False)])  # False: HF forward + DynamicCache
def test_draft_model_greedy_equals_plain_greedy(model, tokenizer, noise, k, fast):
    ids = torch.tensor([tokenizer(PROMPT)["input_ids"]])
    p = SamplingParams(temperature=0, max_new_tokens=30, ignore_eos=True)
    ref = decode(model, ids, None, p, fast=False).tokens[0]
    o = speculative_decode(model, ids, p, drafter=DraftModel(draft_like(model, noise), fast),
                           num_draft_tokens=k, fast=fast)
    assert o.tokens == ref
    assert 0 < o.stats.accepted < o.stats.proposed  # some drafts kept, some rejected
    assert o.stats.new_tokens == 30 and o.stats.target_forwards < 30
    assert o.stats.mean_accepted == pytest.approx(o.stats.accepted / o.stats.target_forwards)


def test_draft_vocab_scores_only_kept_ids(model, tokenizer):
    ids = tokenizer(PROMPT)["input_ids"]
    draft = draft_like(model, 0.05)
    full, part = DraftModel(draft), DraftModel(draft, vocab=20)
    want = full.inc.feed(ids)
    part._restrict(ids)
    got = part._feed(ids)
    keep = torch.zeros(want.shape[-1], dtype=torch.bool)
    keep[:20] = True
    keep[torch.tensor(ids)] = True
    assert part.keep.tolist() == keep.nonzero().squeeze(-1).tolist()
    assert part.head is not None  # the lean step's head over the kept rows ran
    torch.testing.assert_close(got[:, keep], want[:, keep], rtol=1e-4, atol=1e-4)
    assert torch.isinf(got[:, ~keep]).all() and (got[:, ~keep] < 0).all()


@pytest.mark.parametrize("pack", [False, True])
def test_draft_vocab_greedy_equals_plain_greedy(model, tokenizer, pack):
    ids = torch.tensor([tokenizer(PROMPT)["input_ids"]])
    p = SamplingParams(temperature=0, max_new_tokens=30, ignore_eos=True)
    ref = decode(model, ids, None, p, fast=False).tokens[0]
    vocab = sorted(ref)[len(ref) // 2] + 1  # about half the output ids can be drafted
    drafter = DraftModel(draft_like(model, 0.05), pack=pack, vocab=vocab)
    o = speculative_decode(model, ids, p, drafter=drafter, num_draft_tokens=4, pack=pack)
    assert o.tokens == ref
    assert len(drafter.keep) < model.config.vocab_size
    assert 0 < o.stats.accepted < o.stats.proposed


@pytest.mark.parametrize("vocab", [None, 40])
def test_plain_greedy_proposals_skip_the_full_row_and_match_it(model, tokenizer, vocab):
    """Greedy with no transform: the draft's proposals from the kept-id logits alone equal
    those through the full-vocabulary row and a transform that changes nothing."""
    ids = tokenizer(PROMPT)["input_ids"]
    draft = draft_like(model, 0.05)
    out = []
    for transforms in ([], [lambda logits, h: logits]):
        d = DraftModel(draft, vocab=vocab)
        out.append(d.propose(list(ids), 6, transforms, len(ids), True, None)[0])
    assert out[0] == out[1] and len(out[0]) == 6
    if vocab is not None:  # only kept ids proposed
        assert set(out[0]) <= set(range(vocab)) | set(ids)


@pytest.mark.skipif(not native.available(), reason="no native step")
@pytest.mark.parametrize("vocab", [None, 40])
def test_plain_greedy_proposals_in_one_c_call_match_token_by_token(model, tokenizer, vocab,
                                                                   monkeypatch):
    """With the C step (pack), a plain greedy draft's k proposals after the first come from one
    call (``Incremental.greedy``): the same tokens, and the same cache afterwards, as k one-token
    steps (over part of the vocabulary: the extra rows map back to their token ids)."""
    from lmlab.infer.speculative import Incremental

    ids = tokenizer(PROMPT)["input_ids"]
    draft = draft_like(model, 0.05)
    calls, real = [], Incremental.greedy
    monkeypatch.setattr(Incremental, "greedy",
                        lambda self, *a, **k: calls.append(a[1]) or real(self, *a, **k))
    got = []
    for one_call in (True, False):
        if not one_call:
            monkeypatch.setattr(Incremental, "greedy", lambda self, *a, **k: None)
        d = DraftModel(draft, pack=True, vocab=vocab)
        first = d.propose(list(ids), 10, [], len(ids), True, None)[0]
        n = d.inc.n
        d.rollback(len(ids) + 2)  # as after a round that kept two drafts
        second = d.propose(list(ids) + first[:2] + [first[0]], 5, [], len(ids), True, None)[0]
        got.append((first, n, second))
    assert calls == [9, 4]
    assert got[0] == got[1] and len(got[0][0]) == 10 and got[0][1] == len(ids) + 9
    if vocab is not None:
        assert set(got[0][0]) <= set(range(vocab)) | set(ids)
        assert any(t >= vocab for t in got[0][0] + got[0][2])  # an extra row's id proposed


@pytest.mark.parametrize("vocab", [0, -3, 2.5, True])
def test_draft_vocab_must_be_a_positive_integer(model, vocab):
    with pytest.raises(UserError, match="draft_vocab"):
        DraftModel(model, vocab=vocab)


def _propose(seq, k, **kw):
    return PromptLookup(**kw).propose(seq, k, [], 0, True, None)[0]


@pytest.mark.parametrize("seq, k, kw, want", [
    # the last 2-gram [1, 2] also starts at 1 and 5 ([9, 1, 2] nowhere before the tail)
    ([5, 1, 2, 7, 8, 1, 2, 9, 1, 2], 3, {}, [7, 8, 1]),
    ([5, 1, 2, 7, 8, 1, 2, 9, 1, 2], 3, {"prefer": "last"}, [9, 1, 2]),
    # the last 1-gram [2] at 0 and 3; the longer match wins: the 2-gram [9, 2] at 2 only
    ([2, 6, 9, 2, 8, 9, 2], 2, {"max_ngram": 1}, [6, 9]),
    ([2, 6, 9, 2, 8, 9, 2], 2, {"max_ngram": 1, "prefer": "last"}, [8, 9]),
    ([2, 6, 9, 2, 8, 9, 2], 2, {}, [8, 9]),
    # no 3- or 2-gram match: the last token alone, at 0 and 2
    ([3, 4, 3, 5, 6, 3], 3, {}, [4, 3, 5]),
    ([3, 4, 3, 5, 6, 3], 3, {"prefer": "last"}, [5, 6, 3]),
    ([3, 4, 3, 5, 6, 3], 3, {"min_ngram": 2}, []),  # single tokens not allowed
    ([1, 2, 1], 5, {}, [2, 1]),  # fewer than k left after the match
    ([4, 5, 6], 2, {}, []),  # nothing repeats
    ([7, 7, 7, 7], 2, {"max_ngram": 2}, [7, 7]),  # overlapping matches: [7, 7] at 0 and 1
])
def test_prompt_lookup_proposals(seq, k, kw, want):
    assert _propose(seq, k, **kw) == want


@pytest.mark.parametrize("prefer, k", [("first", 2), ("last", 5), ("first", 7)])
def test_replay_rounds_equal_a_real_run(tokenizer, prefer, k):
    m = varied(std=0.1)
    ids = torch.tensor([tokenizer(PROMPT)["input_ids"]])
    p = SamplingParams(temperature=0, max_new_tokens=30, ignore_eos=True)
    o = speculative_decode(m, ids, p, drafter=PromptLookup(3, prefer=prefer), num_draft_tokens=k)
    got = replay_rounds(ids[0].tolist(), o.tokens, PromptLookup(3, prefer=prefer), k, 30)
    assert got == {"checks": o.stats.target_forwards, "drafted": o.stats.proposed,
                   "accepted": o.stats.accepted}
    assert got["checks"] < 30  # lookups were kept: fewer checks than tokens


@pytest.mark.parametrize("kw, field", [({"prefer": "latest"}, "prompt_lookup_prefer"),
                                       ({"max_ngram": 1, "min_ngram": 2},
                                        "prompt_lookup_max_ngram")])
def test_prompt_lookup_bad_settings(kw, field):
    with pytest.raises(UserError, match=field):
        PromptLookup(**kw)


@pytest.mark.parametrize("prefer", PromptLookup.PREFER)
def test_prompt_lookup_greedy_equals_plain_greedy(tokenizer, prefer):
    m = varied(std=0.1)  # a model that repeats itself in runs: lookups hit and miss
    ids = torch.tensor([tokenizer(PROMPT)["input_ids"]])
    p = SamplingParams(temperature=0, max_new_tokens=40, ignore_eos=True)
    ref = decode(m, ids, None, p).tokens[0]
    o = speculative_decode(m, ids, p, drafter=PromptLookup(max_ngram=3, prefer=prefer),
                           num_draft_tokens=5)
    assert o.tokens == ref
    assert 0 < o.stats.accepted < o.stats.proposed


def test_stops_and_logprobs_match_plain_decoding(model, tokenizer):
    ids = torch.tensor([tokenizer(PROMPT)["input_ids"]])
    free = decode(model, ids, None, SamplingParams(temperature=0, max_new_tokens=12,
                                                   ignore_eos=True))
    eos = free.tokens[0][7]
    p = SamplingParams(temperature=0, max_new_tokens=12, logprobs=True)
    ref = decode(model, ids, None, p, eos_token_ids=[eos])
    o = speculative_decode(model, ids, p, drafter=DraftModel(draft_like(model, 0.05)),
                           num_draft_tokens=4, eos_token_ids=[eos])
    assert o.tokens == ref.tokens[0] and o.finish_reason == "eos" == ref.finish_reasons[0]
    torch.testing.assert_close(torch.tensor(o.logprobs), torch.tensor(ref.logprobs[0]),
                               atol=1e-4, rtol=0)


def test_text_level_and_stop_strings(model, tokenizer):
    p = SamplingParams(temperature=0, max_new_tokens=16, stop=["e"])
    ref = generate(model, tokenizer, [PROMPT, "Hello"], p)
    res = generate_speculative(model, tokenizer, [PROMPT, "Hello"], p,
                               draft=draft_like(model, 0.05), draft_tokenizer=tokenizer)
    assert [c.text for c in res.completions] == [c.text for c in ref]
    assert [c.finish_reason for c in res.completions] == [c.finish_reason for c in ref]
    assert res.stats.target_forwards > 0 and "acceptance_rate" in res.stats.as_dict()


@pytest.mark.parametrize("stop", [[], ["e"]])
def test_streamed_text_joins_to_each_completion(tokenizer, stop):
    m = varied(std=0.1)
    p = SamplingParams(temperature=0, max_new_tokens=24, stop=stop)
    prompts = [PROMPT, "Hello"]
    got = {i: [] for i in range(len(prompts))}
    order = []

    def on_text(i, text, finish_reason):
        assert not got[i] or got[i][-1][1] is None  # nothing after a prompt's last piece
        got[i].append((text, finish_reason))
        order.append(i)

    res = generate_speculative(m, tokenizer, prompts, p, on_text=on_text)
    assert order == sorted(order)  # prompt after prompt
    for i, c in enumerate(res.completions):
        assert "".join(t for t, _ in got[i]) == c.text and got[i][-1][1] == c.finish_reason
        assert stop or len(got[i]) > 2  # in pieces, as checks accept them
        assert all(t for t, _ in got[i][:-1])  # no empty piece before the last
    assert res.completions[0].finish_reason == ("stop" if stop else "length")
    assert res.completions[0].text == generate(m, tokenizer, [PROMPT], p)[0].text


def test_draft_with_other_vocabulary_is_refused(model, tokenizer):
    cfg = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1)
    with pytest.raises(UserError, match="draft"):
        check_same_vocab(model, LlamaForCausalLM(cfg))
    with pytest.raises(UserError, match="draft"):
        generate_speculative(model, tokenizer, [PROMPT], draft=LlamaForCausalLM(cfg))


# ----------------------------------------------------------------------------- distribution


def chi2_pvalue(counts: torch.Tensor, probs: torch.Tensor, min_expected: float = 5.0) -> float:
    """Pearson's chi-square goodness of fit; cells expected < 5 are pooled into one."""
    n = counts.sum()
    exp = probs.double() * n
    small = exp < min_expected
    obs = torch.cat([counts[~small].double(), counts[small].double().sum()[None]])
    exp = torch.cat([exp[~small], exp[small].sum()[None]])
    keep = exp > 0
    stat = ((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum()
    dof = int(keep.sum()) - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.double), stat / 2))


def toy(seed: int, vocab: int = 3):
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=64, eos_token_id=None, bos_token_id=None,
                      pad_token_id=None)
    torch.manual_seed(seed)
    m = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.6)
    return m.eval()


def exact_joint(model, prompt: list[int], n: int, process) -> torch.Tensor:
    """P(x_1..x_n | prompt) for every sequence, in itertools.product order."""
    V = model.config.vocab_size
    probs = []
    with torch.no_grad():
        for seq in itertools.product(range(V), repeat=n):
            p = 1.0
            for i in range(n):
                logits = model(torch.tensor([prompt + list(seq[:i])])).logits[0, -1]
                p *= float(process(logits).softmax(-1)[seq[i]])
            probs.append(p)
    return torch.tensor(probs)


CASES = {  # name: (SamplingParams kwargs, the same transform applied to exact logits)
    "plain": ({}, lambda x: x),
    "t0.7-top2": ({"temperature": 0.7, "top_k": 2},
                  lambda x: (x / 0.7).masked_fill(x < x.topk(2).values[-1], float("-inf"))),
}


@pytest.mark.parametrize("drafter_kind,case", [("draft", "plain"), ("draft", "t0.7-top2"),
                                               ("lookup", "plain"), ("draft-vocab", "plain"),
                                               ("draft-vocab-packed", "t0.7-top2")])
def test_speculative_sampling_follows_target_distribution(drafter_kind, case):
    """3 new tokens over a 3-token vocabulary (27 outcomes), 1000 seeded samples (2 drafts
    then a bonus token per sample), compared with the exact target distribution by Pearson's
    chi-square. Tolerance: pass when p-value > 0.001. Power check: as many samples from the
    draft's own distribution fail the same test. ``draft-vocab``: the draft scores only token
    0 and the prompt's tokens (0, 1), so it never proposes 2, which the target still writes.
    ``-packed``: target and draft through packed weights, so the native step where it builds,
    the draft's over bfloat16 copies of its weights and a head of its kept rows."""
    target, draft = toy(0), toy(1)
    prompt = [1, 2, 0, 1, 2]  # repeats, so prompt lookup proposes something every step
    if drafter_kind.startswith("draft-vocab"):
        prompt = [0, 1, 0, 1, 0]
    pack = drafter_kind.endswith("-packed")
    kw, process = CASES[case]
    params = SamplingParams(max_new_tokens=3, ignore_eos=True, **kw)
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(27)
    rates = []
    for _ in range(1000):
        drafter = PromptLookup(max_ngram=2) if drafter_kind == "lookup" else \
            DraftModel(draft, vocab=1 if drafter_kind.startswith("draft-vocab") else None,
                       pack=pack, bf16=True)
        o = speculative_decode(target, torch.tensor([prompt]), params, drafter=drafter,
                               num_draft_tokens=3, eos_token_ids=[], generator=g, pack=pack)
        counts[o.tokens[0] * 9 + o.tokens[1] * 3 + o.tokens[2]] += 1
        rates.append(o.stats.acceptance_rate)
    exact = exact_joint(target, prompt, 3, process)
    assert chi2_pvalue(counts, exact) > 1e-3
    assert 0.05 < sum(rates) / len(rates) < 0.95  # drafts were both accepted and rejected
    if pack and native.available():  # the case ran what it names
        assert drafter.inc.fast._native.bf16 and drafter.head.native_rows[0] == 1
    if drafter_kind.startswith("draft-vocab"):
        assert drafter.keep.tolist() == [0, 1]
        assert counts.view(3, 3, 3)[..., 2].sum() > 0  # the target wrote what the draft cannot
    if drafter_kind == "draft":  # the test can tell a wrong distribution apart
        wrong = torch.multinomial(exact_joint(draft, prompt, 3, process), 1000, replacement=True,
                                  generator=torch.Generator().manual_seed(1))
        assert chi2_pvalue(torch.bincount(wrong, minlength=27).float(), exact) < 1e-3


def test_verify_rule_first_token_distribution():
    """One round of the accept/reject rule on random p, q: the first kept token ~ p."""
    g = torch.Generator().manual_seed(0)
    V = 6
    p = torch.rand(2, V, generator=g).softmax(-1) ** 2
    p = p / p.sum(-1, keepdim=True)
    q = torch.rand(2, V, generator=g).softmax(-1)
    counts = torch.zeros(V)
    for _ in range(20000):
        d = int(torch.multinomial(q[0], 1, generator=g))
        k, nxt = _verify(p, [d], q[:1], greedy=False, generator=g)
        counts[d if k == 1 else nxt] += 1
    assert chi2_pvalue(counts, p[0]) > 1e-3
