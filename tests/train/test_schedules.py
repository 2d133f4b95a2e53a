import math

import pytest

from lmlab.train.schedules import lr_factor


def f(step, schedule, total=10, warmup=2, min_ratio=0.1):
    return lr_factor(step, total=total, warmup=warmup, schedule=schedule, min_ratio=min_ratio)


def test_warmup_is_linear():
    assert f(0, "cosine") == pytest.approx(1 / 3)
    assert f(1, "cosine") == pytest.approx(2 / 3)
    assert f(2, "cosine") == pytest.approx(1.0)


def test_constant_linear_cosine_by_hand():
    assert f(7, "constant") == 1.0
    # linear: progress (6-2)/8 = 0.5 -> 1 - 0.9*0.5 = 0.55
    assert f(6, "linear") == pytest.approx(0.55)
    assert f(10, "linear") == pytest.approx(0.1)
    # cosine at half way: 0.1 + 0.9 * 0.5 * (1 + cos(pi/2)) = 0.55
    assert f(6, "cosine") == pytest.approx(0.55)
    assert f(4, "cosine") == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.25)))


def test_one_cycle_ramps_then_anneals():
    vals = [f(s, "one-cycle", total=20, warmup=0) for s in range(20)]
    peak = vals.index(max(vals))
    assert peak == 6  # 30% of 20 steps = 6 warmup steps (0..5), full lr at step 6
    assert all(a <= b for a, b in zip(vals[:peak], vals[1:peak + 1]))
    assert all(a >= b for a, b in zip(vals[peak:], vals[peak + 1:]))
