import math

from lmlab.eval.judge import LMJudge, agreement, swap_outcomes


class FirstJudge:
    """Always prefers whatever is shown first: pure position bias."""

    def prefer(self, prompts, firsts, seconds):
        return [0.9] * len(prompts)


class LongerJudge:
    """Prefers the longer answer, wherever it is shown."""

    def prefer(self, prompts, firsts, seconds):
        return [0.8 if len(f) > len(s) else 0.2 if len(f) < len(s) else 0.5
                for f, s in zip(firsts, seconds)]


def test_position_bias_cancels_to_ties():
    r = swap_outcomes(FirstJudge(), ["q"] * 3, ["a", "bb", "c"], ["xx", "y", "z"])
    assert r["outcomes"] == [0.5, 0.5, 0.5]
    assert r["position_consistency"] == 0.0 and r["first_position_rate"] == 1.0


def test_consistent_judge_decides():
    r = swap_outcomes(LongerJudge(), ["q"] * 3, ["long answer", "s", "same"], ["s", "longer", "same"])
    assert r["outcomes"] == [1.0, 0.0, 0.5]
    assert math.isclose(r["position_consistency"], 2 / 3)


def test_agreement_ignores_ties():
    assert agreement([1.0, 0.0, 0.5, 1.0], [1.0, 1.0, 1.0, 0.5]) == 0.5
    assert agreement([0.5], [1.0]) is None


def test_lm_judge_on_tiny_model(tiny_model, tokenizer):
    j = LMJudge(tiny_model, tokenizer, batch_size=2)
    p = j.prefer(["What is 2+2?"] * 3, ["4", "five", "4"], ["5", "4", "four"])
    assert len(p) == 3 and all(0 < x < 1 for x in p)
    # batching and padding do not change a verdict
    assert math.isclose(j.prefer(["What is 2+2?"], ["five"], ["4"])[0], p[1], rel_tol=1e-4)
    g = j.grade(["What is 2+2?", "Hi"], ["4", "Hello there"])
    assert all(1 <= x <= 5 for x in g)
