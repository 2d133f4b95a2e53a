"""Skip-gram with negative sampling: the loss by hand, pairs and sampling rules, and a tiny
corpus where words that share contexts end up nearest neighbours."""

import math
import random

import pytest
import torch

from lmlab.scratch import skipgram as S


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_sgns_loss_by_hand_on_two_examples():
    v = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    u = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    neg = torch.tensor([[[1.0, 1.0]], [[0.0, -1.0]]], dtype=torch.float64)  # K = 1
    # example 1: u.v = 2, n.v = 1 -> -log s(2) - log s(-1)
    # example 2: u.v = 2, n.v = -2 -> -log s(2) - log s(2)
    want = (-(_log_sigmoid(2) + _log_sigmoid(-1)) - 2 * _log_sigmoid(2)) / 2
    assert S.sgns_loss(v, u, neg).item() == pytest.approx(want, abs=1e-12)


def test_sgns_loss_at_zero_vectors_is_k_plus_one_log_two():
    z = torch.zeros(3, 4, dtype=torch.float64)
    assert S.sgns_loss(z, z, torch.zeros(3, 5, 4, dtype=torch.float64)).item() == \
        pytest.approx(6 * math.log(2), abs=1e-12)


def test_context_pairs_stay_within_the_window_both_ways():
    ids = torch.arange(10)
    pairs = S.context_pairs(ids, 3, torch.Generator().manual_seed(0))
    gaps = (pairs[:, 0] - pairs[:, 1]).abs()
    assert gaps.min() >= 1 and gaps.max() <= 3
    assert {(a, b) for a, b in pairs.tolist()} >= {(0, 1), (1, 0), (8, 9), (9, 8)}  # reach >= 1
    full = S.context_pairs(ids, 1, torch.Generator().manual_seed(0))
    assert len(full) == 18  # window 1: every neighbour pair, both directions


def test_subsampling_and_noise_by_hand():
    counts = torch.tensor([100.0, 1.0])
    keep = S.keep_probability(counts, t=0.1)
    # f = 100/101 -> sqrt(0.1 * 1.01) = 0.3178; f = 1/101 -> sqrt(10.1) > 1 -> always kept
    assert keep[0].item() == pytest.approx(math.sqrt(0.1 * 101 / 100), rel=1e-5)
    assert keep[1].item() == 1.0
    p = S.noise_distribution(torch.tensor([16.0, 1.0]))
    assert p.tolist() == pytest.approx([8 / 9, 1 / 9], rel=1e-6)  # 16^0.75 = 8


def test_vocab_and_words():
    assert S.words("Thou art THOU'RT, king-like!") == ["thou", "art", "thou'rt", "king", "like"]
    assert S.build_vocab(["a", "b", "a", "c", "a", "b"], min_count=2) == (["a", "b"], [3, 2])


def test_words_sharing_contexts_become_neighbours():
    rng = random.Random(0)
    animals, colours = ["cat", "dog", "cow"], ["red", "blue", "green"]
    sents = []
    for _ in range(600):
        sents += ["the", rng.choice(animals), "eats", "grass", "."]
        sents += ["a", rng.choice(colours), "car", "drives", "fast", "."]
    emb, losses = S.train(sents, dim=16, window=2, negatives=3, epochs=4, lr=0.05,
                          batch_size=256, min_count=1, subsample=1.0, log=None)
    assert losses[-1] < losses[0]
    for group in (animals, colours):
        for w in group:
            near = [x for x, _ in emb.nearest(w, 2)]
            assert set(near) <= set(group) - {w}, (w, near)


def test_analogy_check_on_planted_vectors():
    # b - a + c = d exactly for man:woman :: king:queen
    words = ["man", "woman", "king", "queen", "apple"]
    vecs = torch.tensor([[1.0, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1], [1, -1, -1]])
    emb = S.Embeddings(words, vecs)
    assert emb.analogy("man", "woman", "king") == ["queen"]
    out = S.analogy_check(emb, pairs=[("man", "woman"), ("king", "queen"), ("x", "y")], k=2)
    assert out["questions"] == 2 and out["accuracy"] == 1.0
    assert out["pairs_known"] == ["man:woman", "king:queen"]
