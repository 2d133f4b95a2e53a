"""The greedy run's thread count (lmlab.infer.threads.ThreadChoice), from hand-made timings:
idle it never leaves torch's count; a run twice as slow as its count's best tries one thread
fewer, keeps it while faster, and tries the full count again every ``recheck`` runs."""

from lmlab.infer.threads import ThreadChoice


def _run(c: ThreadChoice, seconds: dict[int, float], n: int) -> list[int]:
    """``n`` runs, each at the chosen count taking ``seconds[count]`` a token: the counts used."""
    used = []
    for _ in range(n):
        t = c.pick()
        used.append(t)
        c.record(t, seconds[t])
    return used


def test_idle_noise_under_twice_the_best_keeps_the_full_count():
    c = ThreadChoice(2)
    times = [0.010, 0.012, 0.019, 0.011, 0.0199, 0.010]  # all under 2 x 0.010
    for t in times:
        assert c.pick() == 2
        c.record(2, t)
    assert c.pick() == 2 and 1 not in c.last


def test_a_busy_core_moves_to_fewer_threads_and_back_when_it_goes():
    c = ThreadChoice(2, recheck=4)
    assert _run(c, {2: 0.010, 1: 0.035}, 3) == [2, 2, 2]
    # a neighbour takes a core: 2 threads 30x slower, one thread unchanged
    loaded = {2: 0.300, 1: 0.035}
    used = _run(c, loaded, 12)
    assert used[:2] == [2, 1]  # one slow run, then one thread
    # on one thread, the full count is tried again every 4 runs and dropped at once
    assert used[2:] == [1, 1, 1, 2, 1, 1, 1, 1, 2, 1]
    # the neighbour leaves: the next try of 2 threads is faster than one thread's last run
    used = _run(c, {2: 0.010, 1: 0.035}, 8)
    assert used[-1] == 2 and used.count(1) <= 4
    assert _run(c, {2: 0.011, 1: 0.035}, 5) == [2] * 5


def test_one_thread_has_nothing_to_choose():
    c = ThreadChoice(1)
    assert _run(c, {1: 0.5}, 3) == [1, 1, 1]
    c.record(1, 5.0)
    assert c.pick() == 1


def test_fewer_threads_that_are_slower_are_left_at_once():
    c = ThreadChoice(4)
    c.record(4, 0.010)
    c.record(4, 0.025)  # slow: try 3
    assert c.pick() == 3
    c.record(3, 0.040)  # slower than 4's latest: back to 4
    assert c.pick() == 4
    c.record(4, 0.026)  # still slow, but 3 was slower still: stay
    assert c.pick() == 4
