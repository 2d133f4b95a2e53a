"""Feeding the HF trainers text in pieces (for thread balance) trains the same tokenizer as
the whole texts, and the parallelism switch is restored after training."""

import json
import os
import random
from collections import Counter

import pytest

from lmlab.data import tokenizers as T

WORDS = ["the", "king", "'s", "crown", "12", "3", "!", "?!", "--", "é", "你好", "😀"]
GAPS = [" ", "  ", "\n", "\n\n", " \n", "\n  ", "\t", " \n\n   ", ""]


def _corpus(seed: int = 0, n_docs: int = 3, n_words: int = 600) -> list[str]:
    """Documents with every kind of whitespace run between words: the places where a cut in
    the wrong spot changes GPT-2's pre-split (``\\s+(?!\\S)`` keeps a space for the next word)."""
    rng = random.Random(seed)
    return ["".join(rng.choice(WORDS) + rng.choice(GAPS) for _ in range(n_words))
            for _ in range(n_docs)]


def test_pieces_join_back_and_cut_only_before_a_newline_after_a_non_space():
    texts = _corpus()
    parts = T.pieces(texts, 20)
    assert len(parts) > 3 * len(texts)
    assert "".join(parts) == "".join(texts)
    starts = [p for p in parts if p not in texts and not any(t.startswith(p) for t in texts)]
    assert starts and all(p[0] == "\n" for p in starts)
    assert T.pieces(texts, 0) == texts


@pytest.mark.parametrize("kind", T.SPLITTABLE)
def test_pieces_give_the_trainer_the_same_words(kind):
    """What a trainer counts is the pre-tokenized words: cutting into pieces must not change
    them (for BPE and WordPiece alike; deterministic, unlike WordPiece's own training)."""
    texts = _corpus()
    tok = T._empty(kind)

    def words(parts):
        out = Counter()
        for part in parts:
            text = tok.normalizer.normalize_str(part) if tok.normalizer else part
            out.update(w for w, _ in tok.pre_tokenizer.pre_tokenize_str(text))
        return out

    assert words(T.pieces(texts, 16)) == words(texts)


def test_bpe_on_pieces_equals_bpe_on_whole_texts():
    """BPE's merges and ids are deterministic: they must be equal. (WordPiece breaks count ties
    in hash-map order, so two trainings on the same whole texts can differ by a token: seen
    here as '##in' vs '##ng'; the word-count test above covers it.)"""
    texts = _corpus()
    specials = T.specials_for("bpe", [])
    whole = json.loads(T.train("bpe", texts, 320, specials, piece_chars=0).to_str())["model"]
    cut = json.loads(T.train("bpe", texts, 320, specials, piece_chars=16).to_str())["model"]
    assert cut == whole  # merges in order, ids


def test_a_naive_line_split_would_change_the_bpe_merges():
    """The corpus exercises the whitespace rule: cutting after every newline changes merges,
    so the equality above is not vacuous."""
    texts = _corpus()
    lines = [ln for t in texts for ln in t.splitlines(keepends=True)]
    whole = json.loads(T.train("bpe", texts, 320, ["<|endoftext|>"], piece_chars=0).to_str())
    naive = json.loads(T.train("bpe", lines, 320, ["<|endoftext|>"], piece_chars=0).to_str())
    assert naive["model"]["merges"] != whole["model"]["merges"]


def test_parallel_restores_the_environment(monkeypatch):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    with T.parallel():
        assert os.environ["TOKENIZERS_PARALLELISM"] == "true"
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    monkeypatch.delenv("TOKENIZERS_PARALLELISM")
    with T.parallel():
        pass
    assert "TOKENIZERS_PARALLELISM" not in os.environ
