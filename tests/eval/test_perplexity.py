import math
from types import SimpleNamespace

import torch

from lmlab.eval.perplexity import (
    NLL,
    bits_per_byte,
    completion_items,
    perplexity,
    sequence_nll,
    text_nll,
    windows,
)
from tests.tolerance import fp32_tol, sum_terms


class TableLM(torch.nn.Module):
    """Logits that ignore the context: the same ``row`` at every position."""

    def __init__(self, row):
        super().__init__()
        self.row = torch.nn.Parameter(torch.tensor(row, dtype=torch.float), requires_grad=False)

    def forward(self, input_ids, attention_mask=None):
        B, T = input_ids.shape
        return SimpleNamespace(logits=self.row.expand(B, T, -1))


class ByteTok:
    """Token id k decodes to k bytes ('x' * k) so byte counts are easy to hand-compute."""

    def decode(self, ids):
        return "".join("x" * i for i in ids)


def test_formulas_by_hand():
    # 2 tokens, total NLL 4 ln 2 -> exp(2 ln 2) = 4; 4 bytes, 8 ln 2 nats -> 2 bits per byte
    assert math.isclose(perplexity(4 * math.log(2), 2), 4.0)
    assert math.isclose(bits_per_byte(8 * math.log(2), 4), 2.0)
    assert perplexity(1.0, 0) is None and bits_per_byte(1.0, 0) is None
    m = NLL(2 * math.log(2), 1, 2).metrics()
    assert math.isclose(m["perplexity"], 4.0) and math.isclose(m["bits_per_byte"], 1.0)


def test_windows_skip_first_token_of_each():
    assert windows([1, 2, 3, 4, 5], 2) == [([1, 2], 1), ([3, 4], 1)]  # [5] alone predicts nothing
    assert windows([1, 2, 3], 3) == [([1, 2, 3], 1)]


def test_uniform_model_has_perplexity_vocab_size():
    V = 8
    lm = TableLM([0.0] * V)
    out = sequence_nll(lm, ByteTok(), [([1, 2, 3], 1), ([4, 5], 1)], batch_size=2)  # padded
    assert out.n_tokens == 3  # tokens 2, 3 and 5
    # fp32 log-softmaxes over 8 (8 + ~6 roundings) for 3 tokens, summed: values within ln 8
    tol = fp32_tol(3 * 14, math.log(V))
    assert math.isclose(out.nll, 3 * math.log(V), rel_tol=0, abs_tol=tol)
    # perplexity = exp(nll / n): a relative error of tol / n on V
    assert math.isclose(out.metrics()["perplexity"], V, rel_tol=tol / 3)
    assert out.n_bytes == 2 + 3 + 5
    # log2(8) = 3: bits per byte = nll / ln 2 / bytes
    assert math.isclose(out.metrics()["bits_per_byte"], 3 * 3 / 10, rel_tol=0,
                        abs_tol=tol / math.log(2) / 10)


def test_only_tokens_from_start_are_scored():
    # p(token 1) = 0.5, p(others) spread: logits log-probs by hand
    row = [math.log(0.25), math.log(0.5), math.log(0.25)]
    out = sequence_nll(TableLM(row), ByteTok(), [([2, 1, 1, 2], 2)])
    assert out.n_tokens == 2
    assert math.isclose(out.nll, -math.log(0.5) - math.log(0.25), rel_tol=0,
                        abs_tol=fp32_tol(2 * 9, math.log(4)))  # 2 log-softmaxes over 3


def test_matches_the_models_own_loss(tiny_model, tokenizer):
    text = "The quick brown fox jumps over the lazy dog. " * 3
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    ours = text_nll(tiny_model, tokenizer, [text], window=len(ids))
    with torch.no_grad():
        ref = tiny_model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss
    assert ours.n_tokens == len(ids) - 1
    # the mean of ~30 log-softmaxes over 49152 logits (inner products over the width 64):
    # logits of size ~1, long sums of probabilities whose relative error lands on the log
    assert math.isclose(ours.nll / ours.n_tokens, ref.item(), rel_tol=0,
                        abs_tol=fp32_tol(64 + sum_terms(49152)) + fp32_tol(30, ref.item()))


def test_completion_items_score_the_answer_only(tokenizer):
    (ids, start), = completion_items(tokenizer, [{"prompt": "2+2?", "answer": "4"}])
    assert tokenizer.decode(ids[start:]) == "4"
    assert "2+2?" in tokenizer.decode(ids[:start])
