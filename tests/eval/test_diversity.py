"""distinct-n by hand: different n-grams over all n-grams, never across two sequences."""

import pytest

from lmlab.eval.diversity import distinct_n


def test_distinct_n_by_hand():
    # bigrams (1,2) (2,1) (1,2) | (3,1) (1,2): 3 different of 5
    assert distinct_n([[1, 2, 1, 2], [3, 1, 2]], 2) == pytest.approx(3 / 5)
    # unigrams: 1 2 1 2 3 1 2 -> {1, 2, 3} of 7
    assert distinct_n([[1, 2, 1, 2], [3, 1, 2]], 1) == pytest.approx(3 / 7)
    # the end of one sequence and the start of the next make no bigram: (1,2) (3,4) both new
    assert distinct_n([[1, 2], [3, 4]], 2) == 1.0
    assert distinct_n([[5, 5, 5, 5]], 2) == pytest.approx(1 / 3)


def test_distinct_n_without_ngrams_and_bad_n():
    assert distinct_n([[1], []], 2) is None
    assert distinct_n([], 2) is None
    with pytest.raises(ValueError, match="n must be >= 1"):
        distinct_n([[1, 2]], 0)
