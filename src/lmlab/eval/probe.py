"""A downstream probe for pretrained models of any paradigm: word order, by a linear classifier.

The task (built from any text): lines of at least ``min_words`` words, half of them with their
words shuffled; a logistic regression on the frozen model's mean-pooled last hidden states
tells real lines from shuffled ones. Every paradigm (decoder or encoder) yields hidden states,
so one probe compares them on equal terms; knowing word order is what pretraining should
teach (a bag-of-characters model scores ~50%).

``plain=True`` lowercases the lines and drops punctuation first: otherwise a shuffle leaves
shallow cues (a capital or a full stop in mid-line, no punctuation at the end) that even an
untrained model's features expose, so the probe measures those instead of word order.
"""

from __future__ import annotations

import random
import re

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def plain_words(line: str) -> list[str]:
    """Lowercased words, punctuation dropped (apostrophes inside a word kept)."""
    return _WORD.findall(line.lower())

import torch


def word_order_task(texts: list[str], n: int, *, seed: int = 0, min_words: int = 6,
                    max_chars: int = 200, plain: bool = False) -> tuple[list[str], list[int]]:
    """``n`` lines (1 = words shuffled, 0 = as written), balanced, in a seeded order;
    ``plain``: lowercase words only (see the module docstring)."""
    lines = [ln.strip() for t in texts for ln in t.splitlines()]
    if plain:
        lines = [" ".join(plain_words(ln)) for ln in lines]
    lines = [ln[:max_chars] for ln in lines if len(ln.split()) >= min_words]
    lines = [ln for ln in lines if len(set(ln.split())) >= 2]  # a shuffle can differ
    rng = random.Random(seed)
    rng.shuffle(lines)
    out, labels = [], []
    for i, ln in enumerate(lines[:n]):
        words = ln.split()
        if i % 2:
            while True:  # a shuffle that differs from the line
                rng.shuffle(words)
                if " ".join(words) != " ".join(ln.split()):
                    break
            out.append(" ".join(words))
            labels.append(1)
        else:
            out.append(" ".join(words))
            labels.append(0)
    return out, labels


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
