"""Class budgets by difficulty, trimmed random selection and last-layer gradient features
(the trimmed and CRAIG-on-gradients selections) on toy inputs worked out by hand."""

import torch

from lmlab.data.coresets import (
    class_quotas,
    facility_location,
    gradient_features,
    select_scored,
    trimmed_random,
)


def test_quotas_follow_size_times_difficulty():
    sizes = torch.tensor([100, 100])
    # total 100 shared 1:3 -> 25 and 75
    assert class_quotas(sizes, torch.tensor([0.1, 0.3]), 0.5).tolist() == [25, 75]
    # power 0: the same fraction of every class whatever the difficulty
    assert class_quotas(sizes, torch.tensor([0.1, 0.3]), 0.5, power=0.0).tolist() == [50, 50]
    # power 0.5: weights 1 : 2 (difficulties 1 and 4) -> 33.3 and 66.7; the larger remainder
    # (0.67) takes the last image
    assert class_quotas(sizes, torch.tensor([1.0, 4.0]), 0.5, power=0.5).tolist() == [33, 67]


def test_quotas_cap_a_class_at_its_size_and_reshare_the_rest():
    # 60 wanted, weights 50*1 : 50*9 -> 6 and 54 > 50 images: class 1 keeps all 50 and
    # class 0 gets the other 60 - 50 = 10
    got = class_quotas(torch.tensor([50, 50]), torch.tensor([1.0, 9.0]), 0.6)
    assert got.tolist() == [10, 50]
    # three classes, the hardest capped at its 10 images, 30 - 10 = 20 shared 1:1
    got = class_quotas(torch.tensor([20, 20, 10]), torch.tensor([1.0, 1.0, 100.0]), 0.6)
    assert got.tolist() == [10, 10, 10]
    # a class the proxy finds trivially easy still keeps one image
    got = class_quotas(torch.tensor([10, 10]), torch.tensor([0.0, 1.0]), 0.5)
    assert got.tolist() == [1, 9]


def test_trimmed_random_drops_the_easiest_and_the_hardest():
    scores = torch.arange(10, dtype=torch.float64)  # index i has difficulty i
    g = torch.Generator().manual_seed(0)
    # drop the easiest 3 (0, 1, 2) and the hardest 2 (8, 9): 3..7 left, all 5 taken
    assert trimmed_random(scores, 5, prune_easy=0.3, prune_hard=0.2,
                          generator=g).tolist() == [3, 4, 5, 6, 7]
    # a budget of 8: only 2 may go; the hardest go first (hard = 2), no easy one is dropped
    assert trimmed_random(scores, 8, prune_easy=0.3, prune_hard=0.2,
                          generator=g).tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    # a budget of 3 among 3..7: a random 3 of them, never outside
    pick = trimmed_random(scores, 3, prune_easy=0.3, prune_hard=0.2, generator=g).tolist()
    assert len(set(pick)) == 3 and all(3 <= i <= 7 for i in pick)


def test_trimmed_with_class_power_gives_the_hard_class_more_and_skips_its_easiest():
    labels = torch.tensor([0] * 10 + [1] * 10)
    # class 0 easy (EL2N 0.1 each), class 1 hard (0.3 .. 0.39)
    scores = torch.cat([torch.full((10,), 0.1), 0.3 + torch.arange(10) / 100]).double()
    idx, w = select_scored("trimmed", labels, 0.5, scores=scores, prune_easy=0.2,
                           prune_hard=0.0, class_power=1.0)
    # quotas: 10 shared by mean EL2N 0.1 : 0.345 -> 2.24 and 7.76 -> 2 and 8
    assert int((labels[idx] == 0).sum()) == 2 and int((labels[idx] == 1).sum()) == 8
    # class 1's two easiest (10, 11) dropped: its 8 are exactly 12..19
    assert sorted(i for i in idx.tolist() if i >= 10) == list(range(12, 20))
    assert w.tolist() == [1.0] * 10


def test_gradient_features_are_the_last_layer_gradient():
    probs = torch.tensor([[0.7, 0.2, 0.1]], dtype=torch.float64, requires_grad=False)
    labels = torch.tensor([1])
    h = torch.tensor([[2.0, -1.0]], dtype=torch.float64)
    # d CE / d logits = p - onehot = (0.7, -0.8, 0.1)
    assert torch.allclose(gradient_features(probs, labels),
                          torch.tensor([[0.7, -0.8, 0.1]], dtype=torch.float64))
    # against autograd: a linear head W (3x2), b (3) whose softmax is probs at input h
    logits = torch.log(probs).clone().requires_grad_(True)
    w = torch.zeros(3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    out = logits.detach() + h @ w.T + b  # the head's gradient at W = 0, b = 0
    torch.nn.functional.cross_entropy(out, labels).backward()
    want = torch.cat([w.grad, b.grad[:, None]], 1).flatten()
    got = gradient_features(probs, labels, h)[0]
    assert torch.allclose(got, want, atol=1e-12, rtol=0)


def test_facility_on_gradients_weights_the_easy_cluster():
    # six near-zero gradients (confident and right) and two far apart: k = 3 takes one
    # representative of the easy cluster standing for all six, and both outliers
    g = torch.tensor([[0.0, 0.0], [0.01, 0.0], [0.0, 0.01], [0.01, 0.01], [0.005, 0.0],
                      [0.0, 0.005], [1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
    idx, w = facility_location(g, 3, exact=True)
    assert sorted(idx.tolist())[1:] == [6, 7] and min(idx.tolist()) < 6
    assert sorted(w.tolist()) == [1.0, 1.0, 6.0]


def test_trimmed_at_power_0_keeps_the_fraction_of_every_class():
    labels = torch.tensor([0] * 10 + [1] * 20)
    scores = torch.arange(30, dtype=torch.float64)
    idx, _ = select_scored("trimmed", labels, 0.5, scores=scores, prune_easy=0.2,
                           prune_hard=0.0, seed=3)
    # 5 of class 0 from its 8 hardest (2..9), 10 of class 1 from its 16 hardest (14..29)
    c0, c1 = [i for i in idx.tolist() if i < 10], [i for i in idx.tolist() if i >= 10]
    assert len(c0) == 5 and min(c0) >= 2 and len(c1) == 10 and min(c1) >= 14
    again, _ = select_scored("trimmed", labels, 0.5, scores=scores, prune_easy=0.2,
                             prune_hard=0.0, seed=3)
    assert again.tolist() == idx.tolist()
