"""Byte-level BPE from scratch: a trainer and an encoder in plain Python.

The twin of ``lmlab.data.tokenizers.train_bpe`` (HF ``tokenizers``' ``BpeTrainer`` behind a
``ByteLevel`` pre-tokenizer): on the same texts and settings it learns the same merges in the
same order, and its ``encode`` gives the same ids (tests/scratch/test_bpe.py).

How byte-level BPE works, in four steps:

1. **Pre-split** the text into pieces with GPT-2's regex (contractions, a letter run with its
   leading space, a number run, a punctuation run, whitespace), so no merge crosses a word
   boundary.
2. **Bytes as characters**: each piece's UTF-8 bytes are mapped one-to-one onto 256 printable
   characters (``byte_chars``; a space becomes ``Ġ``), so any byte string is representable
   and nothing is ever unknown.
3. **Train**: count adjacent symbol pairs over the distinct pieces (weighted by how often each
   piece occurs), merge the most frequent pair into a new symbol, update the counts, repeat
   until the vocabulary is full.
4. **Encode**: split the same way, then apply the learned merges to each piece, lowest rank
   (earliest learned) first.

HF's rules, found by experiment (and matched here):

- ids: the special tokens first, in the order given, then the 256 byte characters sorted by
  code point, then one id per merge in the order learned (a merge whose string already exists
  reuses its id and adds no new one);
- the most frequent pair wins; **ties go to the smallest pair of ids** ``(left, right)``
  (compared left first), i.e. to the pair of older / lower-code-point symbols;
- a pair's count counts every adjacent position, overlapping ones too (``aaa`` holds two
  ``(a, a)``); merging walks a piece left to right, so ``aaa`` becomes ``aa a``;
- special tokens in the training text are trained on as ordinary text; at encode time they
  are cut out first (the longest match wins) and map to their ids.

Training is incremental: each merge touches only the pieces that hold the pair (an index from
pair to pieces) and updates the counts of the pairs around each occurrence; a heap keyed by
(-count, pair) picks the next merge, and a popped entry whose count went stale is pushed back
with its current count. Shakespeare (~4.5 MB) at 1k vocab: well under 2 minutes.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise

import regex

# GPT-2's pre-split, as HF's ByteLevel(use_regex=True) uses it
GPT2_SPLIT = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def byte_chars() -> list[str]:
    """The character standing for each byte 0..255: printable Latin-1 bytes stand for
    themselves, the others (controls, space, ...) for the code points from 256 on."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


BYTE_CHARS = byte_chars()
CHAR_BYTES = {c: b for b, c in enumerate(BYTE_CHARS)}


def to_chars(piece: str) -> str:
    """A text piece as byte characters (``" hi"`` -> ``"Ġhi"``)."""
    return "".join(BYTE_CHARS[b] for b in piece.encode("utf-8"))


def pieces(text: str) -> list[str]:
    """``text`` pre-split by the GPT-2 regex."""
    return GPT2_SPLIT.findall(text)


# ----------------------------------------------------------------------------- training

def _merge_word(word: list[int], a: int, b: int, new: int) -> list[tuple[tuple[int, int], int]]:
    """Merge every ``(a, b)`` in ``word`` (in place, left to right) and return the changes in
    pair counts it causes: ``((left, right), +1 | -1)`` per neighbouring pair made or broken.
    The merged pair's own count is not changed (it is not a candidate any more)."""
    changes = []
    i = 0
    while i < len(word) - 1:
        if word[i] == a and word[i + 1] == b:
            if i > 0:
                changes += [((word[i - 1], a), -1), ((word[i - 1], new), 1)]
            word[i:i + 2] = [new]
            if i < len(word) - 1:
                changes += [((b, word[i + 1]), -1), ((new, word[i + 1]), 1)]
        i += 1
    return changes


@dataclass
class _State:
    """The training state: distinct pieces as id lists, their counts, pair counts, and which
    pieces hold each pair."""

    words: list[list[int]]
    counts: list[int]
    pair_counts: Counter = field(default_factory=Counter)
    where: dict = field(default_factory=lambda: defaultdict(set))

    def count_pairs(self) -> None:
        for i, (w, n) in enumerate(zip(self.words, self.counts)):
            for pair in pairwise(w):
                self.pair_counts[pair] += n
                self.where[pair].add(i)

    def merge(self, pair: tuple[int, int], new: int, heap: list) -> None:
        """Merge ``pair`` into ``new`` in every piece that holds it; push the pairs it made."""
        touched: dict = defaultdict(set)
        for i in self.where.pop(pair, ()):
            for p, change in _merge_word(self.words[i], pair[0], pair[1], new):
                self.pair_counts[p] += change * self.counts[i]
                if change > 0:
                    touched[p].add(i)
        for p, ws in touched.items():
            self.where[p] |= ws
            if self.pair_counts[p] > 0:
                heapq.heappush(heap, (-self.pair_counts[p], p))


def train(texts: Iterable[str], vocab_size: int, special_tokens: Iterable[str] = (),
          min_frequency: int = 0, progress=None) -> BPE:
    """Learn a byte-level BPE of at most ``vocab_size`` tokens (specials and the 256 byte
    characters included) from ``texts``. ``progress(done, total)`` is called now and then."""
    specials = list(dict.fromkeys(special_tokens))
    word_counts: Counter = Counter()
    for text in texts:
        word_counts.update(to_chars(p) for p in pieces(text))
    vocab: dict[str, int] = {s: i for i, s in enumerate(specials)}
    for c in sorted(BYTE_CHARS):
        vocab.setdefault(c, len(vocab))
    names = sorted(vocab, key=vocab.get)
    state = _State([[vocab[c] for c in w] for w in word_counts], list(word_counts.values()))
    state.count_pairs()
    heap = [(-n, p) for p, n in state.pair_counts.items() if n > 0]
    heapq.heapify(heap)
    merges: list[tuple[int, int]] = []
    while len(vocab) < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        if -neg != state.pair_counts[pair]:  # stale: put it back with its count now
            if state.pair_counts[pair] > 0:
                heapq.heappush(heap, (-state.pair_counts[pair], pair))
            continue
        if -neg < max(1, min_frequency):
            break
        token = names[pair[0]] + names[pair[1]]
        if token not in vocab:
            vocab[token] = len(vocab)
            names.append(token)
        merges.append(pair)
        state.merge(pair, vocab[token], heap)
        if progress is not None and len(merges) % 50 == 0:
            progress(len(vocab), vocab_size)
    return BPE(vocab, [(names[a], names[b]) for a, b in merges], specials)


# ----------------------------------------------------------------------------- encoding

class BPE:
    """A trained byte-level BPE: ``vocab`` (token -> id), ``merges`` (pairs of token strings,
    in the order learned) and the special tokens."""

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]],
                 special_tokens: Iterable[str] = ()):
        self.vocab = dict(vocab)
        self.merges = list(merges)
        self.specials = list(special_tokens)
        self.names = {i: s for s, i in self.vocab.items()}
        # (left id, right id) -> (rank, merged id)
        self.ranks = {(self.vocab[a], self.vocab[b]): (r, self.vocab[a + b])
                      for r, (a, b) in enumerate(self.merges)}
        alternatives = sorted(self.specials, key=len, reverse=True)
        self._special_re = (regex.compile("|".join(regex.escape(s) for s in alternatives))
                            if alternatives else None)
        self._cache: dict[str, list[int]] = {}

    def _encode_piece(self, piece: str) -> list[int]:
        if piece in self._cache:
            return self._cache[piece]
        ids = [self.vocab[c] for c in to_chars(piece)]
        while len(ids) > 1:
            # the lowest-ranked pair present; its leftmost occurrence first
            best = min(((self.ranks[p][0], i) for i, p in enumerate(pairwise(ids))
                        if p in self.ranks), default=None)
            if best is None:
                break
            i = best[1]
            ids[i:i + 2] = [self.ranks[(ids[i], ids[i + 1])][1]]
        self._cache[piece] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """The ids of ``text``: special tokens cut out first, the rest split and merged."""
        out: list[int] = []
        start = 0
        matches = self._special_re.finditer(text) if self._special_re else ()
        for m in matches:
            out += self._encode_plain(text[start:m.start()])
            out.append(self.vocab[m.group()])
            start = m.end()
        return out + self._encode_plain(text[start:])

    def _encode_plain(self, text: str) -> list[int]:
        return [i for p in pieces(text) for i in self._encode_piece(p)]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids`` (bytes that do not form UTF-8 become U+FFFD, as HF does)."""
        out = bytearray()
        for i in ids:
            name = self.names[i]
            out += name.encode("utf-8") if name in self.specials else \
                bytes(CHAR_BYTES[c] for c in name)
        return out.decode("utf-8", errors="replace")
