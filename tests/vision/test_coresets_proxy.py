"""The proxy-based coreset selections (EL2N, margins, CCS stratification, moderate coreset) on
toy inputs whose answers are worked out by hand, and the proxy run itself."""

import math

import torch

from lmlab.data.coresets import (
    el2n_scores,
    margin_scores,
    moderate_select,
    select_scored,
    stratified_by_score,
)


def test_el2n_is_the_distance_from_the_one_hot_label():
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.2, 0.8]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1])
    # |(0,0)| = 0; |(-0.5, 0.5)| = sqrt(0.5); |(-1, 1)| = sqrt(2); |(0.2, -0.2)| = sqrt(0.08)
    assert el2n_scores(probs, labels).tolist() == [
        0.0, math.sqrt(0.5), math.sqrt(2.0), math.sqrt(0.08)]


def test_margin_is_true_logit_minus_the_best_other():
    logits = torch.tensor([[3.0, 1.0, 2.0], [3.0, 1.0, 2.0], [0.0, 5.0, 5.0]])
    # 3 - 2 = 1; 1 - 3 = -2 (wrong); a tie with another class: 5 - 5 = 0
    assert margin_scores(logits, torch.tensor([0, 1, 1])).tolist() == [1.0, -2.0, 0.0]


def test_ccs_drops_the_hardest_and_takes_evenly_from_each_stratum():
    scores = torch.arange(10, dtype=torch.float64)  # index i has difficulty i
    g = torch.Generator().manual_seed(0)
    # drop the hardest 20% (8, 9); the range 0..7 in 2 strata of width 3.5: {0..3}, {4..7};
    # the budget of 4 is shared 2 + 2
    pick = stratified_by_score(scores, 4, strata=2, prune_hard=0.2, generator=g).tolist()
    assert len(pick) == 4 and max(pick) <= 7
    assert sum(i <= 3 for i in pick) == 2 and sum(i >= 4 for i in pick) == 2
    # never prune below the budget: keep = max(k, n - 9) = 5 -> the 5 easiest, all taken
    assert stratified_by_score(scores, 5, prune_hard=0.9).tolist() == [0, 1, 2, 3, 4]


def test_ccs_covers_a_sparse_stratum_before_the_crowded_one():
    scores = torch.tensor([0.0] * 6 + [10.0])  # six easy points and one hard
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        # strata {0..5} (6 points) and {6} (1 point); smallest first: 3 // 2 = 1 from {6},
        # then the last 2 of the budget from the six easy ones
        pick = stratified_by_score(scores, 3, strata=2, prune_hard=0.0, generator=g).tolist()
        assert 6 in pick and len(pick) == 3 and len(set(pick)) == 3
    # a random half of 6 easy + 1 hard misses the hard one half the time; CCS never does


def test_moderate_keeps_the_points_at_the_median_distance_from_the_mean():
    pts = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]], dtype=torch.float64)
    # mean 3.2; distances 3.2, 2.2, 1.2, 0.2, 6.8; median 2.2; gaps 1, 0, 1, 2, 4.6
    assert moderate_select(pts, 1).tolist() == [1]
    assert moderate_select(pts, 3).tolist() == [0, 1, 2]  # not the centre (3), not 10


def test_select_scored_works_per_class():
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    scores = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.2, 0.8])
    idx, w = select_scored("el2n", labels, 0.5, scores=scores)
    assert idx.tolist() == [1, 2, 5] and w.tolist() == [1.0, 1.0, 1.0]  # hardest half of each
    idx, _ = select_scored("ccs", labels, 0.5, scores=scores, prune_hard=0.25, seed=3)
    assert (labels[idx] == 0).sum() == 2 and (labels[idx] == 1).sum() == 1
    assert 1 not in idx.tolist()  # class 0's hardest quarter (0.9) is dropped
    feats = torch.tensor([[0.0], [1.0], [2.0], [9.0], [0.0], [4.0]])
    idx, _ = select_scored("moderate", labels, 0.5, features=feats)
    # class 0: mean 3, distances 3, 2, 1, 6; torch's median of an even count is the lower
    # middle, 2 -> gaps 1, 0, 1, 4 -> row 1, then row 0 (tied with 2; the lower index)
    # class 1: mean 2, distances 2, 2 -> row 4
    assert idx.tolist() == [0, 1, 4]


def test_proxy_run_scores_every_image_and_repeats_under_a_seed():
    from lmlab.vision.proxy import train_proxy

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 8, 8, generator=g)
    y = torch.arange(64) % 4
    x[:, 0, 0, :] += y[:, None].float()  # a learnable cue
    a = train_proxy(x, y, 4, epochs=2, batch_size=16, seed=1)
    b = train_proxy(x, y, 4, epochs=2, batch_size=16, seed=1)
    assert a.logits.shape == (64, 4) and a.features.shape == (64, 128) and a.steps == 8
    assert torch.equal(a.logits, b.logits)
