"""A downstream probe for pretrained models of any paradigm, by a linear classifier.

The tasks (built from any text): lines of at least ``min_words`` words, half of them corrupted;
a logistic regression on the frozen model's mean-pooled last hidden states tells real lines
from corrupted ones. Every paradigm (decoder or encoder) yields hidden states, so one probe
compares them on equal terms.

- ``word_order_task``: the words of a line shuffled. Knowing word order is what pretraining
  should teach, but a char-level model needs far more than a few hundred steps for it.
  ``plain=True`` lowercases the lines and drops punctuation first: otherwise a shuffle leaves
  shallow cues (a capital or a full stop in mid-line, no punctuation at the end) that even an
  untrained model's features expose (measured: 78% for an untrained model, docs/pretrain.md).
- ``spelling_task``: the letters inside each word shuffled (plain lines). What a small model
  learns first, after letter frequencies: which letter sequences make words. A bag of
  characters cannot tell the two apart; positions in an untrained model may, so always
  compare with the same model untrained.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

import torch

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def plain_words(line: str) -> list[str]:
    """Lowercased words, punctuation dropped (apostrophes inside a word kept)."""
    return _WORD.findall(line.lower())


def _pair_task(lines: list[str], n: int, seed: int,
               corrupt: Callable[[list[str], random.Random], list[str]]
               ) -> tuple[list[str], list[int]]:
    """``n`` of ``lines`` in a seeded order, every second one corrupted (label 1) by
    ``corrupt(words, rng)`` until it differs from the line."""
    rng = random.Random(seed)
    rng.shuffle(lines)
    out, labels = [], []
    for i, ln in enumerate(lines[:n]):
        words = ln.split()
        if i % 2:
            new = words
            while new == words:
                new = corrupt(list(words), rng)
            words = new
        out.append(" ".join(words))
        labels.append(i % 2)
    return out, labels


def _lines(texts: list[str], plain: bool, min_words: int, max_chars: int) -> list[str]:
    lines = [ln.strip() for t in texts for ln in t.splitlines()]
    if plain:
        lines = [" ".join(plain_words(ln)) for ln in lines]
    return [ln[:max_chars] for ln in lines if len(ln.split()) >= min_words]


def word_order_task(texts: list[str], n: int, *, seed: int = 0, min_words: int = 6,
                    max_chars: int = 200, plain: bool = False) -> tuple[list[str], list[int]]:
    """``n`` lines (1 = words shuffled, 0 = as written), balanced, in a seeded order;
    ``plain``: lowercase words only (see the module docstring)."""
    lines = [ln for ln in _lines(texts, plain, min_words, max_chars)
             if len(set(ln.split())) >= 2]  # a shuffle can differ

    def shuffle(words, rng):
        rng.shuffle(words)
        return words

    return _pair_task(lines, n, seed, shuffle)


def spelling_task(texts: list[str], n: int, *, seed: int = 0, min_words: int = 6,
                  max_chars: int = 200) -> tuple[list[str], list[int]]:
    """``n`` plain lines (1 = the letters of every word shuffled in place, 0 = as written)."""
    lines = [ln for ln in _lines(texts, True, min_words, max_chars)
             if any(len(set(w)) >= 2 for w in ln.split())]  # a shuffle can differ

    def scramble(words, rng):
        out = []
        for w in words:
            letters = list(w)
            rng.shuffle(letters)
            out.append("".join(letters))
        return out

    return _pair_task(lines, n, seed, scramble)


@torch.no_grad()
def features(model, tokenizer, texts: list[str], *, max_len: int, batch_size: int = 16):
    """Mean-pooled last hidden states (N, D) of a transformers base model (``AutoModel``)."""
    import numpy as np

    rows = []
    model.eval()
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i:i + batch_size], add_special_tokens=False, truncation=True,
                        max_length=max_len, padding=True, return_tensors="pt")
        mask = enc["attention_mask"]
        h = model(input_ids=enc["input_ids"], attention_mask=mask).last_hidden_state  # (B,T,D)
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        rows.append(pooled.float().numpy())
    return np.concatenate(rows)


def linear_probe(x_train, y_train, x_test, y_test, *, seed: int = 0) -> float:
    """Test accuracy of a standardised logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    clf.fit(x_train, y_train)
    return float(clf.score(x_test, y_test))
