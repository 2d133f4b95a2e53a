"""The C step's thread count (lmlab.infer.threads), from hand-made timings: both counts tried
first, the faster kept; the other re-tried at doubling intervals, or at once when a run is
twice its count's best; batched steps pooled by shape class."""

from itertools import pairwise

import pytest

from lmlab.infer.threads import Pooled, ThreadChoice, adapting, shape_class


def _run(c: ThreadChoice, seconds: dict[int, float], n: int) -> list[int]:
    """``n`` runs, each at the chosen count taking ``seconds[count]`` a token: the counts used."""
    used = []
    for _ in range(n):
        t = c.pick()
        used.append(t)
        c.record(t, seconds[t])
    return used


def test_idle_keeps_the_full_count_trying_one_fewer_ever_more_rarely():
    c = ThreadChoice(2, recheck=4, most=16)
    used = _run(c, {2: 0.010, 1: 0.018}, 64)
    tries = [i for i, t in enumerate(used) if t == 1]
    assert tries[0] == 1  # the second run tries one thread
    gaps = [b - a - 1 for a, b in pairwise(tries)]
    assert gaps == [8, 16, 16, 16]  # then after 8 runs, then 16 (4 doubled, capped at 16)
    assert c.pick() == 2


def test_a_busy_core_from_the_start_runs_one_thread_and_rechecks():
    c = ThreadChoice(2, recheck=4, most=8)
    used = _run(c, {2: 0.300, 1: 0.035}, 20)
    assert used[:3] == [2, 1, 1]
    assert used.count(2) == 3  # the first run, then tries after 4 and 8 runs
    assert used[-1] == 1


def test_load_that_comes_and_goes():
    c = ThreadChoice(2, recheck=4, most=8)
    _run(c, {2: 0.010, 1: 0.018}, 6)
    assert c.pick() == 2
    used = _run(c, {2: 0.300, 1: 0.035}, 3)  # a neighbour takes a core
    assert used == [2, 1, 1]  # one slow run (30x its best), one thread from then on
    used = _run(c, {2: 0.010, 1: 0.035}, 12)  # it goes: the next try of 2 threads wins
    assert 2 in used and used[-1] == 2 and _run(c, {2: 0.010, 1: 0.035}, 3) == [2, 2, 2]


def test_one_thread_has_nothing_to_choose():
    c = ThreadChoice(1)
    assert _run(c, {1: 0.5}, 3) == [1, 1, 1]


def test_the_switch_takes_0_or_1_and_names_itself_otherwise(monkeypatch):
    monkeypatch.setenv("LMLAB_ADAPT_THREADS", "0")
    assert not adapting()
    monkeypatch.setenv("LMLAB_ADAPT_THREADS", "1")
    assert adapting()
    monkeypatch.setenv("LMLAB_ADAPT_THREADS", "off")
    with pytest.raises(ValueError, match="LMLAB_ADAPT_THREADS: 0 or 1, got 'off'"):
        adapting()


def test_pooled_steps_feed_the_choice_their_mean_and_switch_only_between_pools():
    c = Pooled(ThreadChoice(2, recheck=4, most=8), size=4)
    seconds = {2: [0.010, 0.030, 0.020, 0.020], 1: [0.050] * 4}
    used = []
    for _ in range(2):
        t = c.pick()
        for s in seconds[t]:
            used.append(c.pick())
            c.record(t, s)
    assert used == [2] * 4 + [1] * 4  # the second pool of steps tries one thread
    assert c.choice.best == {2: 0.020, 1: 0.050}  # the means: (10 + 30 + 20 + 20) / 4 ms
    assert c.pick() == 2 and c.n == 0


def test_shape_classes_are_powers_of_two_of_inputs_and_rows():
    assert shape_class(1, 1) == (1, 1)
    assert shape_class(3, 3) == shape_class(2, 2) == (2, 2)
    assert shape_class(7, 1) == shape_class(4, 1) != shape_class(8, 1)
    assert shape_class(12, 3) == (4, 2)  # a prefill of 3 rows x 4, logits of its last tokens
    assert shape_class(5000, 64) == shape_class(64, 100) == (7, 7)
