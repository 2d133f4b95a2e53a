"""The from-scratch byte-level BPE equals HF tokenizers' BpeTrainer + ByteLevel on merges, ids
and encodings; its tie-breaking and counting rules checked on hand-made corpora."""

import json
import random

import pytest

from lmlab.data.tokenizers import train_bpe
from lmlab.scratch import bpe

SPECIALS = ["<|endoftext|>", "<pad>"]


def _hf_merges(tok) -> list[tuple[str, str]]:
    return [tuple(m) for m in json.loads(tok.to_str())["model"]["merges"]]


def _corpus() -> list[str]:
    rng = random.Random(0)
    words = ["the", "then", "there", "thee", "cat", "hat", "that", "at", "tat", "a", "aa",
             "it's", "we'll", "42", "1999", "naïve", "café", "😀", "你好", "--", "?!"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randrange(5, 40)))
             for _ in range(60)]
    return texts + ["  leading spaces\n\n\ttabs <|endoftext|> and aaaa aaa", "x" * 50]


@pytest.mark.parametrize("vocab_size", [259, 300, 420])
def test_merges_vocab_and_encodings_equal_hf(vocab_size):
    texts = _corpus()
    hf = train_bpe(texts, vocab_size, SPECIALS)
    twin = bpe.train(texts, vocab_size, SPECIALS)
    assert twin.merges == _hf_merges(hf)
    assert twin.vocab == hf.get_vocab()
    probes = texts + ["unseen: xyzzy 😀😀 <pad><|endoftext|> \x00\x01 \u200b tab\tend",
                      "<|endoftext|>", ""]
    for t in probes:
        ids = twin.encode(t)
        assert ids == hf.encode(t).ids, t
        assert twin.decode(ids) == t


def test_ids_specials_first_then_bytes_by_code_point():
    twin = bpe.train(["ab ab"], 260, ["<s>"])
    assert twin.vocab["<s>"] == 0 and twin.vocab["!"] == 1  # '!' = 33, the lowest code point
    assert [twin.vocab[c] for c in sorted(bpe.BYTE_CHARS)] == list(range(1, 257))


def _both(texts, vocab_size):
    """The twin's merges, checked equal to HF's on the same texts."""
    twin = bpe.train(texts, vocab_size)
    assert twin.merges == _hf_merges(train_bpe(texts, vocab_size))
    return twin


def test_most_frequent_pair_first_ties_to_the_smallest_ids():
    # one piece per text: (x,y) 3 times, (a,b) and (c,d) twice -> (x,y); then the tie goes
    # to (a,b), whose ids are smaller
    twin = _both(["ab", "ab", "cd", "cd", "xy", "xy", "xy"], 256 + 3)
    assert twin.merges == [("x", "y"), ("a", "b"), ("c", "d")]
    # equal left ids: the smaller right id wins, whatever order the text shows them in
    assert _both(["ac", "ab"], 256 + 1).merges == [("a", "b")]


def test_overlapping_pairs_count_twice_and_merge_left_to_right():
    # "aaa" holds two (a,a): 2 beats (b,c)'s 1; merging gives "aa a", and then (aa,a) and
    # (b,c) tie at 1: (b,c) wins, its ids are older than the new "aa"
    twin = _both(["aaa", "bc"], 256 + 3)
    assert twin.merges == [("a", "a"), ("b", "c"), ("aa", "a")]
    # encoding: lowest rank first, leftmost first: aaaaa -> aa a a a -> aa aa a -> aa aaa
    ids = twin.encode("aaaaa")
    assert ids == [twin.vocab["aa"], twin.vocab["aaa"]] == train_bpe(
        ["aaa", "bc"], 256 + 3).encode("aaaaa").ids


def test_specials_are_single_ids_when_encoding_and_plain_text_when_training():
    twin = bpe.train(["<|endoftext|>" * 20], 300, ["<|endoftext|>"])
    assert ("<", "|") in twin.merges or ("|", "end") in twin.merges or twin.merges
    assert twin.encode("hi<|endoftext|>") == twin.encode("hi") + [0]


def test_byte_chars_is_a_bijection_with_printable_characters():
    assert len(set(bpe.BYTE_CHARS)) == 256 and bpe.BYTE_CHARS[32] == "Ġ"
    assert all(c.isprintable() for c in bpe.BYTE_CHARS)
    assert bpe.to_chars(" hé") == "ĠhÃ©"


@pytest.mark.slow
def test_shakespeare_1k_vocab_equals_hf():
    """The whole training part of corpus:shakespeare (~4.5 MB): seconds for the twin."""
    from lmlab.data.corpora import corpus_texts

    texts = corpus_texts("shakespeare")
    hf = train_bpe(texts, 1000, ["<|endoftext|>"])
    twin = bpe.train(texts, 1000, ["<|endoftext|>"])
    assert twin.merges == _hf_merges(hf) and twin.vocab == hf.get_vocab()
    held = corpus_texts("shakespeare", "heldout")[0][:20000]
    assert twin.encode(held) == hf.encode(held).ids
