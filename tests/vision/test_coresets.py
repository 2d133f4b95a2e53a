"""Coreset selection on toy sets whose answer is known by hand."""

import torch

from lmlab.data.coresets import facility_location, kcenter_greedy, select


def _line(*xs):
    return torch.tensor(xs, dtype=torch.float64)[:, None]  # (N, 1): points on a line


def test_kcenter_on_a_line_picks_the_ends_then_the_middle():
    pts = _line(*range(11))  # 0..10
    assert kcenter_greedy(pts, 3, first=0).tolist() == [0, 10, 5]
    # default start: the point nearest the mean (5), then the farthest (0 on a tie), then 10
    assert kcenter_greedy(pts, 3).tolist() == [5, 0, 10]
    assert kcenter_greedy(pts, 20).shape == (11,)  # k is capped at N


def test_facility_location_picks_one_point_per_cluster_with_its_weight():
    pts = _line(0.0, 0.1, 0.2, 10.0, 10.1, 10.2, 10.3)
    idx, w = facility_location(pts, 2, exact=True)
    # sim = 10.3 - distance. First pick: the largest sum of similarities = the smallest sum of
    # distances = the median of all 7 points, 10.0 (index 3). Second: the gains over the small
    # cluster are 29.5 for 0.1, 29.4 for 0.0, 29.3 for 0.2 (and 0 from the big one) -> 0.1.
    assert idx.tolist() == [3, 1]
    assert w.tolist() == [4.0, 3.0]  # each stands for its own cluster


def test_facility_location_first_pick_maximises_total_similarity():
    pts = _line(0.0, 1.0, 2.0, 3.0, 10.0)
    idx, w = facility_location(pts, 1, exact=True)
    # sim = 10 - |a - b|; sums of distances: 0:16, 1:13, 2:12, 3:13, 10:34 -> the median, 2
    assert idx.tolist() == [2] and w.tolist() == [5.0]


def test_select_keeps_the_fraction_per_class_and_normalises_weights():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(40, 3, generator=g)
    labels = torch.tensor([0] * 30 + [1] * 10)
    for method in ("random", "kcenter", "facility"):
        idx, w = select(method, feats, labels, 0.5, seed=1)
        assert len(set(idx.tolist())) == len(idx) == 20
        assert (labels[idx] == 0).sum() == 15 and (labels[idx] == 1).sum() == 5
        assert abs(float(w.mean()) - 1) < 1e-6
    a, _ = select("random", feats, labels, 0.5, seed=1)
    b, _ = select("random", feats, labels, 0.5, seed=1)
    assert torch.equal(a, b)
