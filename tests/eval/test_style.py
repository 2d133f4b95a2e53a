"""Style rules: concise (length, filler, repetition) and positive (VADER)."""

import pytest

from lmlab.errors import UserError
from lmlab.eval.style import (concise, filler_count, get_rule, positive, repeated_sentences,
                              style_scores)


def test_concise_by_hand():
    assert concise("The capital of France is Paris.") == 1.0
    assert concise("") == 0.0 and concise("<|im_end|> anything after the end") == 0.0
    # two fillers (-0.3) and one repeated sentence (-0.2)
    text = "It is Paris. It is Paris. Basically, you know."
    assert filler_count(text) == 2 and repeated_sentences(text) == 1
    assert concise(text) == pytest.approx(0.5)
    # 35 plain words: 10 past the budget of 25 -> -0.2
    assert concise(" ".join(["word"] * 35)) == pytest.approx(0.8)
    assert concise("basically " * 20) == 0.0  # clamped


def test_positive_is_vader_compound():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    text = "I love this wonderful garden."
    assert positive(text) == SentimentIntensityAnalyzer().polarity_scores(text)["compound"]
    assert positive(text) > 0.5 > 0 > positive("This is awful and I hate it.")
    assert positive("The train leaves at noon.") == 0.0


def test_rules_registry_and_metric():
    with pytest.raises(UserError, match="unknown style rule"):
        get_rule("funny")
    m = style_scores("concise", ["Paris.", "basically " * 20])
    assert m["mean"] == 0.5 and m["n"] == 2 and m["scores"] == [1.0, 0.0]
