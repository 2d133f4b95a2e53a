"""ROUGE-L as a pure function: hand-computed values, and equal to rouge-score (its twin)."""

from __future__ import annotations

import random

import pytest

from lmlab.eval.rouge import lcs_length, max_rouge_l, rouge_l, tokens


def test_tokens_like_rouge_score():
    assert tokens("Sort THESE numbers: 42, 7!") == ["sort", "these", "numbers", "42", "7"]
    assert tokens("x-ray café") == ["x", "ray", "caf"]


def test_hand_computed():
    # "the cat sat on the mat" vs "the cat lay on a mat": LCS the cat on mat = 4 of 6 and 6
    assert lcs_length(["the", "cat", "sat", "on", "the", "mat"],
                      ["the", "cat", "lay", "on", "a", "mat"]) == 4
    assert rouge_l("the cat sat on the mat", "the cat lay on a mat") == pytest.approx(4 / 6)
    # 3 tokens vs 5 tokens, LCS 3: P = 1, R = 3/5, F = 2 * 0.6 / 1.6 = 0.75
    assert rouge_l("name a colour", "please name a warm colour") == pytest.approx(0.75)
    assert rouge_l("a b c", "c b a") == pytest.approx(1 / 3)  # LCS 1 (order matters)
    assert rouge_l("same words", "Same, words.") == 1.0
    assert rouge_l("", "anything") == 0.0 and rouge_l("abc", "xyz") == 0.0
    assert max_rouge_l("name a colour", [tokens("a b"), tokens("please name a warm colour")]) \
        == pytest.approx(0.75)
    assert max_rouge_l("anything", []) == 0.0


def test_equal_to_rouge_score():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rng = random.Random(0)
    words = ["the", "a", "cat", "dog", "sat", "on", "mat", "12", "x-ray", "Sort", "ADD",
             "numbers", ",", "."]
    for _ in range(300):
        a = " ".join(rng.choice(words) for _ in range(rng.randint(0, 9)))
        b = " ".join(rng.choice(words) for _ in range(rng.randint(0, 9)))
        want = scorer.score(b, a)["rougeL"].fmeasure
        assert abs(rouge_l(a, b) - want) < 1e-12, (a, b)
