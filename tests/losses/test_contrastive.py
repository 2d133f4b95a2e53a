"""InfoNCE / MultipleNegativesRankingLoss: by hand on a 2x2 case, and parity with
sentence-transformers' MNRL on the same embeddings (with and without hard negatives)."""

import math

import pytest
import torch

from lmlab.losses.contrastive import in_batch_accuracy, info_nce

from ..tolerance import approx_fp32, fp32_tol


def test_info_nce_two_by_two_by_hand():
    # anchors (1,0), (0,1); candidates (1,0), (1,1)/sqrt2 (normalised inside: scale matters)
    a = torch.tensor([[1.0, 0.0], [0.0, 3.0]])  # the length of a vector must not matter
    c = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    r = 1 / math.sqrt(2)
    for scale in (1.0, 20.0):
        # anchor 0: scores (1, r) -> -log softmax[0]; anchor 1: scores (0, r) -> [1]
        want = [math.log(1 + math.exp(scale * (r - 1))), math.log(1 + math.exp(-scale * r))]
        got = info_nce(a, c, scale)
        assert got.tolist() == approx_fp32(want, terms=8, scale=scale)
    assert in_batch_accuracy(a, c).tolist() == [1.0, 1.0]


def test_hard_negatives_only_add_columns():
    # every anchor sees every hard negative: the two negatives (0, 1) add exp(0) twice to
    # anchor 0's denominator and exp(1) twice to anchor 1's
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    neg = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    plain = info_nce(a, c, 1.0)
    hard = info_nce(a, torch.cat([c, neg]), 1.0)
    e = math.e
    assert plain.tolist() == approx_fp32([math.log(1 + 1 / e)] * 2, terms=8)
    assert hard.tolist() == approx_fp32([math.log(1 + 3 / e), math.log(3 + 1 / e)], terms=8)


def test_fewer_candidates_than_anchors_is_refused():
    with pytest.raises(ValueError, match="needs its positive"):
        info_nce(torch.ones(3, 2), torch.ones(2, 2))


@pytest.fixture(scope="module")
def st_model(tmp_path_factory):
    from sentence_transformers import SentenceTransformer

    from lmlab.embed.model import load_encoder, save_encoder

    enc, tok = load_encoder("tiny:bert")
    folder = tmp_path_factory.mktemp("st") / "m"
    save_encoder(enc, tok, folder, max_len=32)
    return SentenceTransformer(str(folder), device="cpu")


@pytest.mark.parametrize("hard,scale", [(False, 20.0), (True, 7.5)])
def test_parity_with_sentence_transformers_mnrl(st_model, hard, scale):
    from sentence_transformers.sentence_transformer import losses

    mnrl = losses.MultipleNegativesRankingLoss(st_model, scale=scale)
    g = torch.Generator().manual_seed(0)
    a, p, n = (torch.randn(6, 16, generator=g, requires_grad=True) for _ in range(3))
    parts = [a, p, n] if hard else [a, p]
    theirs = mnrl.compute_loss_from_embeddings(parts, None)
    ours = info_nce(a, torch.cat(parts[1:]), scale).mean()
    # both: 16-wide dot products, an 18-way softmax, a mean over 6 anchors; logits up to scale
    assert ours.item() == approx_fp32(theirs.item(), terms=16 + 18 + 6, scale=scale)
    g_ours = torch.autograd.grad(ours, parts)
    g_theirs = torch.autograd.grad(theirs, parts)
    for x, y in zip(g_ours, g_theirs):
        assert torch.allclose(x, y, rtol=0, atol=fp32_tol(16 + 18 + 6, scale))


def test_a_learned_scale_rises_when_the_positives_already_win():
    # each anchor's positive scores highest: a sharper softmax (larger scale) lowers the loss,
    # so the gradient on log(scale) is negative and gradient descent raises the scale
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    c = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    log_s = torch.tensor(math.log(5.0), requires_grad=True)
    info_nce(a, c, log_s.exp()).sum().backward()
    assert log_s.grad < 0
    # and falls when the negatives win (the scale is learned from the data, not pushed up)
    log_s.grad = None
    info_nce(a, c.flip(0), log_s.exp()).sum().backward()
    assert log_s.grad > 0
