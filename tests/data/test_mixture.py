"""Task mixtures and replay: source splitting, probabilities, frequencies, exact replay counts."""

import math

import pytest

from lmlab.data.mixture import (
    MixtureStream,
    draw_source,
    is_replay,
    mixture_probs,
    split_sources,
)


def test_split_sources():
    assert split_sources("task:add,sort") == ["task:add", "task:sort"]
    assert split_sources("task:add,task:sort") == ["task:add", "task:sort"]
    assert split_sources("a.jsonl,task:add,sort,b.csv") == ["a.jsonl", "task:add", "task:sort",
                                                             "b.csv"]
    assert split_sources("org/name") == ["org/name"]
    from lmlab.data.tasks import task_names

    assert split_sources("task:all") == [f"task:{t}" for t in task_names()]


def test_split_sources_gives_a_groups_options_to_every_task_of_it():
    # read as one source, "task:add,sort?cot=1" is add and sort with worked solutions; split
    # into mixture sources it must stay that, not add plain and sort with CoT
    assert split_sources("task:add,sort?cot=1") == ["task:add?cot=1", "task:sort?cot=1"]
    assert split_sources("task:add,task:sort?cot=1") == ["task:add", "task:sort?cot=1"]
    assert split_sources("a.jsonl,task:add,sort?cot=0,b.csv") == [
        "a.jsonl", "task:add?cot=0", "task:sort?cot=0", "b.csv"]
    from lmlab.data.tasks import task_names

    assert split_sources("task:all?cot=1") == [f"task:{t}?cot=1" for t in task_names()]


def test_mixture_probs_by_hand():
    assert mixture_probs([100, 400]) == pytest.approx([0.2, 0.8], abs=1e-12)
    # T = 2: sqrt(100) = 10, sqrt(400) = 20
    assert mixture_probs([100, 400], temperature=2.0) == pytest.approx([1 / 3, 2 / 3], abs=1e-12)
    assert mixture_probs([100, 400], weights=[3, 1]) == pytest.approx([0.75, 0.25], abs=1e-12)
    with pytest.raises(ValueError, match="1 weights for 2 sources"):
        mixture_probs([1, 2], weights=[1])


def _chi_square(counts, probs):
    n = sum(counts)
    return sum((c - n * p) ** 2 / (n * p) for c, p in zip(counts, probs))


def test_mixture_frequencies_chi_square():
    probs = [0.5, 0.3, 0.2]
    n = 3000
    counts = [0, 0, 0]
    for k in range(n):
        counts[draw_source(k, probs, seed=7)] += 1
    # chi-square with 2 degrees of freedom has survival exp(-x/2): the 1e-3 critical value is
    # -2 ln(1e-3) = 13.8
    threshold = -2 * math.log(1e-3)
    assert _chi_square(counts, probs) < threshold, counts
    # the test can fail: the same draws are far from a uniform mixture
    assert _chi_square(counts, [1 / 3] * 3) > threshold


def test_replay_count_is_exact():
    for fraction, total in [(0.2, 40), (0.3, 10), (0.25, 7), (1.0, 5), (0.0, 9)]:
        assert sum(is_replay(k, fraction) for k in range(total)) == math.floor(total * fraction)
    # evenly spread: with 0.2, every fifth example
    assert [k for k in range(15) if is_replay(k, 0.2)] == [4, 9, 14]


def test_mixture_stream_replay_and_sources():
    b, a = [f"b{i}" for i in range(10)], [f"a{i}" for i in range(4)]
    s = MixtureStream([b, a], 5, list, choose=lambda k: 1 if is_replay(k, 0.2) else 0)
    drawn = [x for _ in range(4) for x in s.next()]
    assert sum(x.startswith("a") for x in drawn) == 4  # exactly 20% of 20
    from_b = [x for x in drawn if x.startswith("b")]
    assert len(from_b) == 16 and sorted(from_b[:10]) == sorted(b)  # a whole pass over B first
    assert sorted(x for x in drawn if x.startswith("a")) == sorted(a)


def test_mixture_stream_resumes_exactly():
    groups = [list(range(7)), list(range(100, 103))]

    def make():
        return MixtureStream(groups, 3, list, choose=lambda k: draw_source(k, [0.6, 0.4], 1),
                             seed=5)

    full = make()
    want = [full.next() for _ in range(8)]
    part = make()
    got = [part.next() for _ in range(3)]
    again = make()
    again.load_state_dict(part.state_dict())
    assert got + [again.next() for _ in range(5)] == want


def test_mixture_stream_ranks_split_the_global_batch():
    groups = [list(range(8)), list(range(100, 104))]

    def choose(k):
        return k % 2

    one = MixtureStream(groups, 4, list, choose=choose)
    r0 = MixtureStream(groups, 2, list, choose=choose, rank=0, world=2)
    r1 = MixtureStream(groups, 2, list, choose=choose, rank=1, world=2)
    for _ in range(3):
        assert one.next() == r0.next() + r1.next()
