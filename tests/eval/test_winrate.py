from lmlab.eval.winrate import bootstrap_ci, outcomes, win_rate


def test_outcomes_and_counts_with_ties():
    outs = outcomes([3.0, 1.0, 2.0, 2.05], [1.0, 3.0, 2.0, 2.0], tie_margin=0.1)
    assert outs == [1.0, 0.0, 0.5, 0.5]
    r = win_rate(outs, n_boot=200)
    assert (r["n"], r["wins"], r["ties"], r["losses"]) == (4, 1, 2, 1)
    assert r["win_rate"] == 0.5  # (1 + 2/2) / 4


def test_bootstrap_ci_known_answer():
    assert bootstrap_ci([1.0] * 50) == (1.0, 1.0)
    # 400 fair coin flips, exactly half wins: mean 0.5, SE = 0.5 / sqrt(400) = 0.025,
    # so the 95% interval is about 0.5 +- 1.96 * 0.025 = [0.451, 0.549]
    lo, hi = bootstrap_ci([1.0, 0.0] * 200, n_boot=4000, seed=0)
    assert 0.44 < lo < 0.465 and 0.535 < hi < 0.56
    assert bootstrap_ci([1.0, 0.0] * 200, n_boot=4000, seed=0) == (lo, hi)  # seeded
    assert bootstrap_ci([]) is None
