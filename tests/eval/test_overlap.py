import math

import pytest

from lmlab.eval.overlap import bleu, rouge_l


def test_rouge_l_by_hand():
    # LCS("the cat sat", "the cat sat on the mat") = 3: P = 3/3, R = 3/6, F = 2PR/(P+R) = 2/3
    assert math.isclose(rouge_l(["the cat sat"], [["the cat sat on the mat"]]), 2 / 3)
    # best of several references; mean over predictions: (1 + 0) / 2
    assert math.isclose(rouge_l(["a b", "x"], [["c d", "a b"], ["y"]]), 0.5)


def test_bleu_by_hand():
    assert math.isclose(bleu(["the cat sat on the mat"], [["the cat sat on the mat"]]), 100.0)
    # every n-gram precision is 1, brevity penalty exp(1 - 6/4): 100 * e^-0.5
    assert math.isclose(bleu(["a b c d"], [["a b c d e f"]]), 100 * math.exp(-0.5), rel_tol=1e-4)
    # several references: the closest length counts, so the short exact one gives 100
    assert math.isclose(bleu(["a b c d"], [["a b c d e f", "a b c d"]]), 100.0)


def test_bad_inputs():
    with pytest.raises(ValueError):
        rouge_l(["a"], [])
    with pytest.raises(ValueError):
        bleu(["a"], [[]])
    assert rouge_l([], []) is None and bleu([], []) is None
