"""The rubric judge: parsing free-text answers, the answer slot, logprob scores with padding,
and pairwise verdicts over both orders."""

import pytest
import torch

from lmlab.errors import UserError
from lmlab.eval.rubric_judge import (
    RubricJudge,
    Verdict,
    _verdict,
    answer_slot,
    next_token_logprobs,
    parse_choice,
    parse_score,
    read_rubric,
)
from tests.tolerance import approx_fp32


@pytest.mark.parametrize("text,want", [
    ("Rating: 4", 4.0), ("**Score:** 3", 3.0), ("8/10", 4.0), ("I give it 4 out of 5", 4.0),
    ("Rating: five", 5.0), ("Rating: 10/10", 5.0), ("It is 2.", 2.0), ("3.5/5", 3.5),
    ("Rating: 7", None), ("no number here", None), ("0", None), ("v1.2 is 4", 4.0),
    ("Score: 12/10", None)])
def test_parse_score(text, want):
    assert parse_score(text, 5) == want


@pytest.mark.parametrize("text,want", [
    ("A", "A"), ("B.", "B"), ("[[B]]", "B"), ("Response A is better than Response B", "A"),
    ("Better response: Response B", "B"), ("Better response: A", "A"), ("(A)", "A"),
    ("A good answer is B", "B"), ("Answer: b", None), ("neither of them", None),
    ("A or B, hard to say", None)])
def test_parse_choice(text, want):
    assert parse_choice(text) == want


def test_verdict_needs_both_orders_to_agree():
    assert _verdict("A", "B", None).winner == 0  # x first: A; y first: B (= x) -> x
    assert _verdict("B", "A", None).winner == 1
    assert _verdict("A", "A", None).winner is None  # always the first position: a tie
    assert _verdict("B", "B", None).winner is None
    assert _verdict(None, "B", None).winner is None


def test_answer_slot_on_smollm2_tokenizer(tok):
    suffix, ids = answer_slot(tok, "Rating:", ["1", "2", "3"])
    assert suffix == "Rating: "  # SmolLM2 splits " 3" into "Ġ", "3": read the bare digit
    assert ids == [tok.encode(d, add_special_tokens=False)[0] for d in "123"]
    suffix, ids = answer_slot(tok, "Better response:", ["A", "B"])
    assert suffix == "Better response:" and tok.convert_ids_to_tokens(ids) == ["ĠA", "ĠB"]


def test_next_token_logprobs_batch_equals_one_by_one(tiny):
    model, tok = tiny
    texts = ["Hello there, how are you today?", "Hi", "A much longer text that needs padding "
             "on the left when it is batched with the short ones."]
    batched = next_token_logprobs(model, tok, texts, batch_size=3)
    for i, t in enumerate(texts):
        ids = torch.tensor([tok(t, add_special_tokens=False)["input_ids"]])
        alone = torch.log_softmax(model(input_ids=ids).logits[0, -1].float(), -1)
        torch.testing.assert_close(batched[i], alone, atol=1e-4, rtol=1e-4)


def test_pointwise_score_is_the_expected_label(tiny):
    model, tok = tiny
    judge = RubricJudge(model, tok, scale=3)
    (score,) = judge.score(["What is 2+2?"], ["4"])
    suffix, ids = answer_slot(tok, "Rating:", ["1", "2", "3"])
    text = judge._render(judge.pointwise_prompt("What is 2+2?", "4"), suffix)
    p = next_token_logprobs(model, tok, [text])[0, ids].exp()
    # fp32 on both sides: 3 probabilities normalised and weighted by 1-3, summed
    assert score == approx_fp32(float((p / p.sum() * torch.tensor([1., 2., 3.])).sum()), 8)
    assert 1 <= score <= 3 and 0 < judge.label_mass[0] <= 1


class _FirstPosition(RubricJudge):
    """A judge with a fixed position bias: P(A) = 0.9 whatever it is shown."""

    def _label_probs(self, users, suffix, labels):
        return torch.tensor([[0.9, 0.1]] * len(users))


class _Prefers(RubricJudge):
    """Prefers the reply that contains 'good' wherever it is shown."""

    def _label_probs(self, users, suffix, labels):
        out = []
        for u in users:
            a = u.split("[Response A]\n")[1].split("\n\n[Response B]")[0]
            out.append([0.8, 0.2] if "good" in a else [0.3, 0.7])
        return torch.tensor(out)


def test_pairwise_swap_turns_position_bias_into_ties(tiny):
    model, tok = tiny
    v = _FirstPosition(model, tok).compare(["q", "q"], ["x1", "x2"], ["y1", "y2"])
    assert [x.winner for x in v] == [None, None]
    v = _Prefers(model, tok).compare(["q", "q"], ["good", "bad"], ["bad", "good"])
    assert [x.winner for x in v] == [0, 1]
    assert v[0].p_x == pytest.approx((0.8 + 1 - 0.3) / 2)
    assert isinstance(v[0], Verdict)


def test_generate_method_parses_and_counts_unreadable(tiny):
    model, tok = tiny
    judge = RubricJudge(model, tok, method="generate", max_new_tokens=3)
    scores = judge.score(["q", "q"], ["a", "b"])
    assert len(scores) == 2 and all(s is None or 1 <= s <= 5 for s in scores)
    verdicts = judge.compare(["q"], ["a"], ["b"])
    assert verdicts[0].winner in (0, 1, None)


def test_bad_judge_settings(tiny, tmp_path):
    model, tok = tiny
    with pytest.raises(UserError, match="scale"):
        RubricJudge(model, tok, scale=10)
    with pytest.raises(UserError, match="method"):
        RubricJudge(model, tok, method="vibes")
    with pytest.raises(UserError, match="does not exist"):
        read_rubric(str(tmp_path / "missing.txt"))
    f = tmp_path / "r.txt"
    f.write_text("Prefer short answers.\n")
    assert read_rubric(str(f)) == "Prefer short answers."
    assert read_rubric("Be kind.") == "Be kind."


@pytest.fixture(scope="module")
def tok():
    from lmlab.models import load_tokenizer

    return load_tokenizer("tiny:llama")


@pytest.fixture(scope="module")
def tiny(tok):
    from lmlab.models import load_model

    return load_model("tiny:llama").eval(), tok
