import math

import torch

from lmlab.eval.similarity import bertscore, greedy_match
from tests.tolerance import fp32_tol, sum_terms


def test_greedy_match_by_hand():
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # candidate tokens
    r = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, -1.0]])  # reference tokens (unit norm)
    p, rec, f = greedy_match(c, r)
    # P: token 0 best = 1.0, token 1 best = 0.8 -> 0.9
    # R: ref 0 best = 1.0, ref 1 best = max(0.6, 0.8) = 0.8, ref 2 best = max(0, -1) = 0 -> 0.6
    tol = fp32_tol(8)  # fp32: dot products of 2, a max, a mean of <= 3, the F1's few steps
    assert math.isclose(p, 0.9, abs_tol=tol) and math.isclose(rec, 0.6, abs_tol=tol)
    assert math.isclose(f, 2 * 0.9 * 0.6 / 1.5, abs_tol=tol)


# a cosine of two fp32 embeddings of width 384 (normalised: another sum of 384) is 1 within this
COS_TOL = fp32_tol(2 * sum_terms(384))


def test_bertscore_with_minilm():
    same = bertscore(["The weather is nice today."], [["The weather is nice today."]])
    assert math.isclose(same["bertscore_f1"], 1.0, rel_tol=0, abs_tol=COS_TOL)
    near = bertscore(["It is sunny and warm today."], [["The weather is nice today."]])
    far = bertscore(["Compile the kernel with gcc."], [["The weather is nice today."]])
    assert 0 < far["bertscore_f1"] < near["bertscore_f1"] < 1
    best = bertscore(["The weather is nice today."],
                     [["Compile the kernel with gcc.", "The weather is nice today."]])
    assert math.isclose(best["bertscore_f1"], 1.0, rel_tol=0, abs_tol=COS_TOL)
