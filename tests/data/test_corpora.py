"""Corpora and text sources: the held-out split, files and globs, and each offline corpus
that is installed here (a missing one names how to install it)."""

import pytest

from lmlab.data import corpora
from lmlab.errors import DataError


def test_split_cuts_at_the_line_end_after_ninety_percent():
    text = "".join(f"line {i}\n" for i in range(100))
    train, held = corpora.split(text)
    assert train + held == text and held.startswith("\n") and 0.08 < len(held) / len(text) < 0.11
    assert corpora.split("a b c d e f g h i j k l") == ("a b c d e f g h i j k", " l")


def test_files_and_globs_are_documents(tmp_path):
    for i in range(3):
        (tmp_path / f"d{i}.txt").write_text(f"doc {i}\n" * 20)
    docs = corpora.text_documents(f"{tmp_path}/d*.txt, {tmp_path}/d0.txt")
    assert [n.split("/")[-1] for n, _ in docs] == ["d0.txt", "d1.txt", "d2.txt", "d0.txt"]
    train, held = corpora.train_heldout(f"{tmp_path}/d*.txt", train_chars=100)
    assert sum(map(len, train)) == 100 and len(held) == 3


@pytest.mark.parametrize("name", corpora.CORPORA)
def test_each_installed_corpus_reads_or_names_its_install(name):
    if name in corpora.NPM and not corpora.npm_path(name).exists():
        pytest.skip(f"{name}: its npm tarball is not cached here (tests download nothing)")
    try:
        docs = corpora.documents(f"corpus:{name}")
    except DataError as e:
        assert corpora.INSTALL[name] in str(e) or "npm" in str(e)
        pytest.skip(f"{name} is not installed here: {e}")
    assert docs and sum(len(t) for _, t in docs) > 1_000_000
    held = corpora.corpus_texts(name, "heldout")
    assert 0.05 < sum(map(len, held)) / sum(len(t) for _, t in docs) < 0.15


def test_unknown_corpus_lists_the_known_ones():
    with pytest.raises(DataError, match="known: shakespeare, bible"):
        corpora.documents("corpus:nope")
