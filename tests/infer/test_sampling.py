"""Logits transforms: parity with HF logits processors on random logits, hand-checked cases,
parameter validation."""

import pytest
import torch
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)

from lmlab.errors import UserError
from lmlab.infer import sampling as S

B, V, T = 6, 300, 40


@pytest.fixture()
def logits():
    g = torch.Generator().manual_seed(0)
    return torch.randn(B, V, generator=g) * 3


@pytest.fixture()
def tokens():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 20, (B, T), generator=g)  # small range: many repeats and n-grams


def assert_same(ours, theirs):
    """Same tokens removed (-inf) and the same values elsewhere (float32 round-off)."""
    assert torch.equal(torch.isinf(ours), torch.isinf(theirs))
    finite = ~torch.isinf(ours)
    torch.testing.assert_close(ours[finite], theirs[finite], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("k", [1, 5, 50, 299, 300, 1000])
def test_top_k_matches_hf(logits, k):
    assert_same(S.top_k(logits, k), TopKLogitsWarper(k)(None, logits.clone()))


@pytest.mark.parametrize("p", [0.01, 0.3, 0.9, 0.999, 1.0])
def test_top_p_matches_hf(logits, p):
    assert_same(S.top_p(logits, p), TopPLogitsWarper(p)(None, logits.clone()))


@pytest.mark.parametrize("p", [0.0, 0.01, 0.1, 0.5, 1.0])
def test_min_p_matches_hf(logits, p):
    theirs = MinPLogitsWarper(p)(None, logits.clone()) if p > 0 else logits
    assert_same(S.min_p(logits, p), theirs)


@pytest.mark.parametrize("mass", [0.05, 0.5, 0.9, 0.99])
def test_typical_matches_hf(logits, mass):
    assert_same(S.typical_p(logits, mass), TypicalLogitsWarper(mass)(None, logits.clone()))


@pytest.mark.parametrize("t", [0.3, 1.0, 2.5])
def test_temperature_matches_hf(logits, t):
    assert_same(S.temperature(logits, t), TemperatureLogitsWarper(t)(None, logits.clone()))


@pytest.mark.parametrize("penalty", [0.7, 1.3, 2.0])
def test_repetition_penalty_matches_hf(logits, tokens, penalty):
    theirs = RepetitionPenaltyLogitsProcessor(penalty)(tokens, logits.clone())
    assert_same(S.repetition_penalty(logits, tokens, penalty), theirs)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_no_repeat_ngram_matches_hf(logits, tokens, n):
    theirs = NoRepeatNGramLogitsProcessor(n)(tokens, logits.clone())
    assert_same(S.no_repeat_ngram(logits, tokens, n), theirs)


def test_transforms_are_pure(logits, tokens):
    before = logits.clone()
    p = S.SamplingParams(temperature=0.7, top_k=20, top_p=0.9, min_p=0.05, typical_p=0.95,
                         repetition_penalty=1.2, presence_penalty=0.5, frequency_penalty=0.1,
                         no_repeat_ngram_size=2, logit_bias={3: 5.0})
    h = S.History(tokens, prompt_len=10)
    S.apply_transforms(logits, S.build_transforms(p), h)
    assert torch.equal(logits, before)


def test_padding_is_ignored_by_penalties():
    logits = torch.zeros(1, 5)
    toks = torch.tensor([[-1, -1, 2, 2, 3]])
    out = S.presence_frequency_penalty(logits, toks, presence=1.0, frequency=0.5)
    assert out.tolist() == [[0.0, 0.0, -2.0, -1.5, 0.0]]
    out = S.repetition_penalty(torch.ones(1, 5), toks, 2.0)
    assert out.tolist() == [[1.0, 1.0, 0.5, 0.5, 1.0]]


def test_presence_frequency_only_count_generated_tokens():
    p = S.SamplingParams(temperature=0, frequency_penalty=1.0)
    h = S.History(torch.tensor([[4, 4, 4, 1]]), prompt_len=3)  # only token 1 was generated
    out = S.apply_transforms(torch.zeros(1, 5), S.build_transforms(p), h)
    assert out.tolist() == [[0.0, -1.0, 0.0, 0.0, 0.0]]


def test_no_repeat_ngram_skips_padding():
    toks = torch.tensor([[-1, -1, 5, 6, 5]])
    out = S.no_repeat_ngram(torch.zeros(1, 8), toks, 2)
    assert torch.isinf(out[0, 6]) and torch.isinf(out).sum() == 1


def test_logit_bias_and_min_new_tokens():
    p = S.SamplingParams(temperature=0, logit_bias={1: 10.0}, min_new_tokens=2)
    logits = torch.zeros(2, 4)
    h = S.History(torch.tensor([[0, 3], [0, 3]]), prompt_len=1)  # one token generated
    out = S.apply_transforms(logits, S.build_transforms(p, eos_token_ids=[1]), h)
    assert torch.isinf(out[:, 1]).all()  # bias or not, EOS is banned before 2 tokens
    h2 = S.History(torch.tensor([[0, 3, 3], [0, 3, 3]]), prompt_len=1)
    out = S.apply_transforms(logits, S.build_transforms(p, eos_token_ids=[1]), h2)
    assert out[:, 1].tolist() == [10.0, 10.0]


def test_greedy_ignores_filters_and_takes_argmax(logits):
    p = S.SamplingParams(temperature=0, top_k=3, top_p=0.1)
    assert torch.equal(S.sample(logits, p), logits.argmax(-1))


def test_sample_is_reproducible_with_generator(logits):
    p = S.SamplingParams(temperature=0.9, top_p=0.95)
    a = S.sample(logits, p, torch.Generator().manual_seed(7))
    b = S.sample(logits, p, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_sample_only_draws_kept_tokens(logits):
    p = S.SamplingParams(top_k=3)
    g = torch.Generator().manual_seed(0)
    allowed = torch.topk(logits, 3).indices
    for _ in range(50):
        t = S.sample(logits, p, g)
        assert (allowed == t[:, None]).any(-1).all()


def test_sample_frequencies_follow_softmax():
    logits = torch.tensor([[0.0, 1.0, 2.0, -1.0]]).expand(20000, -1)
    t = S.sample(logits, S.SamplingParams(temperature=1.0), torch.Generator().manual_seed(0))
    freq = torch.bincount(t, minlength=4).float() / t.numel()
    torch.testing.assert_close(freq, logits[0].softmax(-1), atol=0.015, rtol=0)


def test_draw_inverts_the_running_sum():
    # probs 0.1, 0, 0.3, 0.6: u in [0, .1) -> 0, [.1, .4) -> 2, [.4, 1) -> 3; token 1 never
    probs = torch.tensor([0.1, 0.0, 0.3, 0.6])
    for seed in range(40):
        u = float(torch.rand(1, 1, generator=torch.Generator().manual_seed(seed),
                             dtype=torch.float64))
        want = 0 if u < 0.1 else 2 if u < 0.4 else 3
        assert int(S.draw(probs, torch.Generator().manual_seed(seed))) == want, u


def test_draw_unnormalised_rows_and_shapes():
    w = torch.tensor([[2.0, 0.0, 6.0], [0.0, 5.0, 0.0]])  # row sums 8 and 5
    g = torch.Generator().manual_seed(0)
    t = S.draw(w[:, None].expand(2, 20000, 3), g)
    assert t.shape == (2, 20000)
    assert (t[1] == 1).all()
    assert 0.72 < (t[0] == 2).float().mean() < 0.78  # 6 / 8
    assert not (t[0] == 1).any()


@pytest.mark.parametrize("row", [[0.0, 0.0, 0.0], [float("nan"), 0.5, 0.5]])
def test_draw_refuses_a_row_with_nothing_to_draw(row):
    with pytest.raises(UserError, match="no token left"):
        S.draw(torch.tensor([[0.2, 0.3, 0.5], row]))


def test_draw_never_returns_a_zero_token_when_u_rounds_up(monkeypatch):
    # u * total == total (rounding): searchsorted says "past the end"; the last positive wins
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.ones(*a[0], dtype=torch.float64))
    assert S.draw(torch.tensor([[0.5, 0.5, 0.0, 0.0]])).tolist() == [1]


@pytest.mark.parametrize("field,value", [("temperature", -0.1), ("top_p", 0.0), ("top_p", 1.5),
                                         ("top_k", -1), ("min_p", 2.0), ("typical_p", 0.0),
                                         ("repetition_penalty", 0.0), ("max_new_tokens", -3),
                                         ("stop", [""]), ("stop", [3]), ("stop_token_ids", ["x"]),
                                         ("logprobs_mode", "both"), ("top_k", 1.5)])
def test_invalid_params_name_the_field(field, value):
    with pytest.raises(UserError, match=field):
        S.SamplingParams(**{field: value})


def test_all_problems_reported_at_once():
    with pytest.raises(UserError) as e:
        S.SamplingParams(temperature=-1, top_p=2, top_k=-5)
    msg = str(e.value)
    assert "temperature" in msg and "top_p" in msg and "top_k" in msg


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(UserError, match="top_q"):
        S.SamplingParams.from_dict({"top_q": 0.5})
    assert S.SamplingParams.from_dict({"stop": "###"}).stop == ["###"]


def test_argmax_equals_torch_first_index_nan_and_fallbacks():
    torch.manual_seed(0)
    x = torch.randn(4, 1000)
    x[1, 5] = x[1, 9] = 50.0  # a tie: the first index
    x[2, 7] = x[2, 3] = float("nan")  # NaN counts as the largest, first one wins
    x[3] = float("-inf")
    for t in (x, x[:, ::3], x[0], x.view(2, 2, 1000)):
        got = S.argmax(t)
        assert got.dtype == torch.long and got.shape == t.shape[:-1]
        assert torch.equal(got, t.argmax(-1))
    assert S.argmax(x).tolist()[1:3] == [5, 3]
    with torch.inference_mode():
        y = torch.randn(3, 50)
        assert torch.equal(S.argmax(y), y.argmax(-1))
    g = torch.randn(2, 9, requires_grad=True)  # torch's own path
    assert torch.equal(S.argmax(g), g.argmax(-1))
    h = torch.randn(2, 9, dtype=torch.bfloat16)
    assert torch.equal(S.argmax(h), h.argmax(-1))
