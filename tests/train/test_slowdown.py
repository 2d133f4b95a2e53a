"""The slow-steps hint (lmlab.train.slowdown), from hand-made step rates."""

from lmlab.train.slowdown import SlowWatch, hint


def _said(w: SlowWatch, rates: list[float], seconds: float = 1.0) -> list[int]:
    return [i for i, r in enumerate(rates) if w.see(r, seconds)]


def test_three_steps_in_a_row_under_a_third_of_the_best_say_so_once():
    w = SlowWatch()
    # a slow first step (a compile) only sets a low best; 300 tok/s steps raise it
    rates = [20, 300, 310, 90, 120, 300, 100, 100, 100, 50, 50, 50]
    assert _said(w, rates) == [8]  # 90 then 120 (not under 310 / 3): no run of three until 6-8
    assert w.best == 310


def test_noise_and_gradual_changes_say_nothing():
    w = SlowWatch()
    assert _said(w, [300, 280, 150, 310, 105, 320, 200, 110, 106.6]) == []  # 106.6 * 3 < 320
    assert w.slow == 1


def test_the_hint_names_the_setting_that_helps():
    line = hint(4.2, {})
    assert line.startswith("[lmlab] the last steps ran 4x slower than this run's best")
    assert "GOMP_SPINCOUNT=10000" in line
    assert "OMP_NUM_THREADS" in hint(4.2, {"GOMP_SPINCOUNT": "10000"})
    assert "OMP_NUM_THREADS" in hint(4.2, {"OMP_WAIT_POLICY": "passive"})


def test_short_steps_are_not_judged():
    w = SlowWatch(min_s=0.2)
    assert _said(w, [300, 50, 50, 50, 50], seconds=0.05) == [] and w.best == 0
    assert _said(w, [300, 50, 50, 50], seconds=0.2) == [3]
