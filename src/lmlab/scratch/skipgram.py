"""Word embeddings from scratch: skip-gram with negative sampling (word2vec, Mikolov et al. 2013).

Each word w gets two vectors: ``v_w`` when it is the centre word and ``u_w`` when it is a
context word. For every (centre c, context o) pair seen within ``window`` words of each other,
and ``k`` "negative" words n_1..n_k drawn from the unigram distribution raised to 3/4, the loss

    L = -log σ(u_o · v_c) - Σ_i log σ(-u_{n_i} · v_c)

pulls the centre towards its real contexts and pushes it from random ones (``sgns_loss``).
Words that share contexts end with similar centre vectors, so cosine neighbours are related
words, and differences can encode relations: v(king) - v(man) + v(woman) ≈ v(queen).

The pieces are small pure functions (vocabulary, frequent-word subsampling, pair sampling,
the noise distribution, the loss), the model is two ``nn.Embedding`` tables, and ``lab`` runs
the whole thing on a corpus and returns nearest neighbours and an analogy score:

    from lmlab.scratch.skipgram import lab
    out = lab("corpus:bible", epochs=1)
    out["neighbours"]["king"], out["analogy"]["accuracy"]
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
# relation pairs (a : b :: c : d) that the built-in analogy check asks, where all four words
# are in the vocabulary: gender in family and rank words, and pronouns
ANALOGY_PAIRS = [("man", "woman"), ("king", "queen"), ("father", "mother"), ("son", "daughter"),
                 ("brother", "sister"), ("he", "she"), ("his", "her"), ("husband", "wife"),
                 ("lord", "lady"), ("boy", "girl"), ("sir", "madam"), ("prince", "princess"),
                 ("uncle", "aunt"), ("men", "women"), ("sons", "daughters"), ("god", "goddess")]
PROBE_WORDS = ["king", "love", "god", "death", "good", "father", "war", "city", "water", "day"]


def words(text: str) -> list[str]:
    """Lower-cased words (letters, with one inner apostrophe: "thou'rt")."""
    return WORD.findall(text.lower())


def build_vocab(tokens: list[str], min_count: int = 5,
                max_size: int | None = None) -> tuple[list[str], list[int]]:
    """(words, counts), most frequent first, keeping words seen at least ``min_count`` times."""
    common = Counter(tokens).most_common(max_size)
    kept = [(w, n) for w, n in common if n >= min_count]
    return [w for w, _ in kept], [n for _, n in kept]


def keep_probability(counts: torch.Tensor, t: float = 1e-4) -> torch.Tensor:
    """Mikolov's subsampling: a word of frequency f is kept with probability min(1, sqrt(t/f)),
    so "the" and "and" stop dominating the pairs."""
    f = counts / counts.sum()
    return torch.clamp(torch.sqrt(t / f), max=1.0)


def noise_distribution(counts: torch.Tensor, power: float = 0.75) -> torch.Tensor:
    """Negatives are drawn with probability ∝ count^0.75 (rare words more often than by
    frequency alone)."""
    p = counts.double() ** power
    return (p / p.sum()).float()


def context_pairs(ids: torch.Tensor, window: int, gen: torch.Generator) -> torch.Tensor:
    """(N, 2) (centre, context) pairs: each position takes a random window 1..``window`` (so
    near words count more often than far ones, as in word2vec) and pairs with every word
    that close on either side."""
    n = len(ids)
    reach = torch.randint(1, window + 1, (n,), generator=gen)
    out = []
    for offset in range(1, window + 1):
        centre = torch.arange(n - offset)
        for c, o in ((centre, centre + offset), (centre + offset, centre)):
            keep = reach[c] >= offset
            out.append(torch.stack([ids[c[keep]], ids[o[keep]]], dim=1))
    return torch.cat(out)


def sgns_loss(v_centre: torch.Tensor, u_context: torch.Tensor,
              u_negative: torch.Tensor) -> torch.Tensor:
    """Mean skip-gram negative-sampling loss: v_centre (B, D), u_context (B, D), u_negative
    (B, K, D) -> -log σ(u_o·v_c) - Σ_k log σ(-u_k·v_c), averaged over B."""
    pos = (v_centre * u_context).sum(-1)  # (B,)
    neg = torch.einsum("bkd,bd->bk", u_negative, v_centre)  # (B, K)
    return -(F.logsigmoid(pos) + F.logsigmoid(-neg).sum(-1)).mean()


class SkipGram(nn.Module):
    """Centre vectors ``v`` (the embeddings one keeps) and context vectors ``u``."""

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.v = nn.Embedding(vocab_size, dim)
        self.u = nn.Embedding(vocab_size, dim)
        nn.init.uniform_(self.v.weight, -0.5 / dim, 0.5 / dim)
        nn.init.zeros_(self.u.weight)  # word2vec's init: contexts start at zero

    def forward(self, centre, context, negatives) -> torch.Tensor:
        return sgns_loss(self.v(centre), self.u(context), self.u(negatives))


@dataclass
class Embeddings:
    """Trained word vectors with cosine look-ups."""

    words: list[str]
    vectors: torch.Tensor  # (V, D)

    def __post_init__(self):
        self.index = {w: i for i, w in enumerate(self.words)}
        self.unit = F.normalize(self.vectors, dim=1)

    def nearest(self, query: str | torch.Tensor, k: int = 5,
                exclude: tuple[str, ...] = ()) -> list[tuple[str, float]]:
        """The ``k`` words of highest cosine similarity to a word or a vector."""
        vec = self.unit[self.index[query]] if isinstance(query, str) else F.normalize(query, dim=0)
        sims = self.unit @ vec
        skip = set(exclude) | ({query} if isinstance(query, str) else set())
        order = sims.argsort(descending=True).tolist()
        return [(self.words[i], sims[i].item()) for i in order
                if self.words[i] not in skip][:k]

    def analogy(self, a: str, b: str, c: str, k: int = 1) -> list[str]:
        """a : b :: c : ?  -> the words nearest to b - a + c (the three asked words excluded)."""
        vec = self.unit[self.index[b]] - self.unit[self.index[a]] + self.unit[self.index[c]]
        return [w for w, _ in self.nearest(vec, k, exclude=(a, b, c))]


def analogy_check(emb: Embeddings, pairs=ANALOGY_PAIRS, k: int = 5) -> dict:
    """Every question a : b :: c : d from two relation pairs (a, b), (c, d) whose words are all
    known; accuracy = d is the nearest answer, top-k = d among the ``k`` nearest."""
    known = [p for p in pairs if all(w in emb.index for w in p)]
    questions = [(a, b, c, d) for a, b in known for c, d in known if a != c]
    hits = topk = 0
    for a, b, c, d in questions:
        got = emb.analogy(a, b, c, k)
        hits += got[:1] == [d]
        topk += d in got
    n = max(len(questions), 1)
    return {"questions": len(questions), "accuracy": hits / n, f"top{k}": topk / n,
            "pairs_known": [f"{a}:{b}" for a, b in known]}


def train(tokens: list[str], *, dim: int = 64, window: int = 4, negatives: int = 5,
          epochs: int = 1, lr: float = 0.01, batch_size: int = 4096, min_count: int = 5,
          max_vocab: int | None = 20000, subsample: float = 1e-4, seed: int = 0,
          log=print) -> tuple[Embeddings, list[float]]:
    """Train skip-gram with negative sampling on ``tokens``; returns the embeddings and the
    loss of every 100th batch."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    vocab, counts = build_vocab(tokens, min_count, max_vocab)
    if len(vocab) < 2:
        raise ValueError(f"only {len(vocab)} word(s) occur {min_count}+ times: a larger corpus "
                         f"or a lower min_count")
    index = {w: i for i, w in enumerate(vocab)}
    ids = torch.tensor([index[t] for t in tokens if t in index])
    counts_t = torch.tensor(counts, dtype=torch.float32)
    keep, noise = keep_probability(counts_t, subsample), noise_distribution(counts_t)
    model = SkipGram(len(vocab), dim)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses: list[float] = []
    for epoch in range(epochs):
        kept = ids[torch.rand(len(ids), generator=gen) < keep[ids]]
        pairs = context_pairs(kept, window, gen)
        pairs = pairs[torch.randperm(len(pairs), generator=gen)]
        t0, steps = time.perf_counter(), math.ceil(len(pairs) / batch_size)
        for s in range(steps):
            b = pairs[s * batch_size:(s + 1) * batch_size]
            neg = torch.multinomial(noise, len(b) * negatives, replacement=True,
                                    generator=gen).view(len(b), negatives)
            loss = model(b[:, 0], b[:, 1], neg)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if s % 100 == 0:
                losses.append(loss.item())
            if log and (s % 500 == 0 or s == steps - 1):
                log(f"[skipgram] epoch {epoch + 1}/{epochs} step {s + 1}/{steps} "
                    f"loss {loss.item():.3f} ({time.perf_counter() - t0:.0f} s)")
    return Embeddings(vocab, model.v.weight.detach().clone()), losses


def lab(source: str = "corpus:bible", *, probes=PROBE_WORDS, k: int = 5, **train_kw) -> dict:
    """Train on the training part of a corpus / files (``lmlab.data.corpora.train_heldout``)
    and report: vocabulary size, loss curve, nearest neighbours of probe words, and the
    analogy check."""
    from lmlab.data.corpora import train_heldout

    texts, _ = train_heldout(source)
    tokens = [w for t in texts for w in words(t)]
    emb, losses = train(tokens, **train_kw)
    return {"source": source, "tokens": len(tokens), "vocab": len(emb.words),
            "losses": losses, "embeddings": emb,
            "neighbours": {w: emb.nearest(w, k) for w in probes if w in emb.index},
            "analogy": analogy_check(emb, k=k)}
