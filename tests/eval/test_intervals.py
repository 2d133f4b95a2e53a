"""Bootstrap intervals on hand-made samples (lmlab.eval.intervals)."""

import pytest

from lmlab.eval.intervals import accuracy, bootstrap_ci, excludes_zero, paired_gain


def test_two_item_sample_by_hand():
    # Resampling [0, 1] gives a mean of 0, 0.5, 1 with probability 1/4, 1/2, 1/4: the 2.5% and
    # 97.5% quantiles of those means are 0 and 1.
    assert bootstrap_ci([0.0, 1.0], n_boot=4000, seed=0) == (0.0, 1.0)


def test_constant_samples_have_a_point_interval():
    assert bootstrap_ci([1.0] * 7) == (1.0, 1.0)
    assert accuracy([False] * 5) == {"accuracy": 0.0, "n": 5, "correct": 0, "ci95": [0.0, 0.0]}
    assert bootstrap_ci([]) is None and accuracy([])["ci95"] is None


def test_accuracy_of_a_hand_made_sample():
    flags = [True] * 15 + [False] * 5  # 75%; normal-approximation half-width 1.96 * sqrt(.75 *
    # .25 / 20) = 0.19; the bootstrap's comes within 0.04 of it with 4000 resamples
    a = accuracy(flags, n_boot=4000, seed=3)
    assert (a["accuracy"], a["n"], a["correct"]) == (0.75, 20, 15)
    lo, hi = a["ci95"]
    assert lo < 0.75 < hi
    assert abs((hi - lo) / 2 - 0.19) < 0.04
    # Means of 20 items are multiples of 1/20, so are the interval's ends.
    assert round(lo * 20, 6).is_integer() and round(hi * 20, 6).is_integer()
    assert accuracy(flags, n_boot=4000, seed=3) == a  # seeded


def test_paired_gain_resamples_prompts_once_for_both():
    before = [False] * 10
    after = [True] * 10
    g = paired_gain(before, after)
    assert (g["before"], g["after"], g["gain"], g["n"], g["ci95"]) == (0.0, 1.0, 1.0, 10,
                                                                      [1.0, 1.0])
    # The same items right and wrong before and after: no gain, exactly, in every resample.
    same = [True, False, True, False]
    assert paired_gain(same, same)["ci95"] == [0.0, 0.0]
    # 4 of 8 fixed, none broken: gain 0.5, interval inside (0, 1].
    g = paired_gain([False] * 8, [True] * 4 + [False] * 4, n_boot=4000, seed=1)
    assert g["gain"] == 0.5 and excludes_zero(g["ci95"]) and g["ci95"][1] <= 1.0
    assert not excludes_zero([-0.1, 0.2]) and excludes_zero([-0.3, -0.1])
    with pytest.raises(ValueError, match="3 items before but 2 after"):
        paired_gain([True] * 3, [True] * 2)
