"""The word-order probe's task and the sample-quality number, by hand."""

from lmlab.eval.probe import plain_words, word_order_task
from lmlab.eval.sample_quality import known_word_rate, word_vocab

TEXT = ("To be, or not to be: that is the question.\n"
        "short line\n"
        "Whether 'tis nobler in the mind to suffer\n"
        "The slings and arrows of outrageous fortune,\n"
        "Or to take arms against a sea of troubles\n")


def test_plain_words_lowercase_no_punctuation_apostrophes_kept():
    assert plain_words("Whether 'tis nobler, O'er THE sea!") == [
        "whether", "tis", "nobler", "o'er", "the", "sea"]


def test_word_order_task_balanced_same_words_and_seeded():
    texts, labels = word_order_task([TEXT], 4, seed=3)
    assert labels == [0, 1, 0, 1]  # the short line (2 words) is left out
    real = {ln.strip() for ln in TEXT.splitlines()}
    for t, y in zip(texts, labels):
        assert (t in real) == (y == 0)  # a shuffled line never equals a real one
        assert any(sorted(t.split()) == sorted(r.split()) for r in real)
    assert word_order_task([TEXT], 4, seed=3) == (texts, labels)
    assert word_order_task([TEXT], 4, seed=4)[0] != texts


def test_word_order_task_plain_has_no_capitals_or_punctuation():
    texts, labels = word_order_task([TEXT], 4, seed=0, plain=True)
    assert len(texts) == 4 and sum(labels) == 2
    assert all(t == t.lower() and not any(c in t for c in ",.:") for t in texts)
    lines = [" ".join(plain_words(ln)) for ln in TEXT.splitlines() if len(ln.split()) >= 6]
    assert sorted(sorted(t.split()) for t in texts) == sorted(sorted(ln.split())
                                                              for ln in lines)


def test_known_word_rate_by_hand():
    vocab = word_vocab(["The cat sat.", "A dog"])
    assert vocab == {"the", "cat", "sat", "a", "dog"}
    # 5 words: the, cat, xqz, dog, sat -> 4 known
    assert known_word_rate(["The cat xqz,", "dog SAT"], vocab) == 4 / 5
    assert known_word_rate(["!!", ""], vocab) is None


def test_spelling_task_scrambles_letters_inside_words_only():
    from lmlab.eval.probe import spelling_task

    texts, labels = spelling_task([TEXT], 4, seed=2)
    assert labels == [0, 1, 0, 1]
    lines = {" ".join(plain_words(ln)) for ln in TEXT.splitlines() if len(ln.split()) >= 6}
    for t, y in zip(texts, labels):
        assert (t in lines) == (y == 0)
        # same word count and each word an anagram of a word of one real line, in place
        assert any([sorted(w) for w in t.split()] == [sorted(w) for w in ln.split()]
                   for ln in lines)
