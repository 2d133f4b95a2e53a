"""Bad-input corpus, `lmlab tokenizer`: empty and non-UTF-8 corpora, patterns that match
nothing, a vocabulary too small for the byte alphabet plus the special tokens, a chat template
without its tokens. Each is a clean error naming what to change, before any run folder is
written."""

from __future__ import annotations

from pathlib import Path


def put(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def tok(fail, tmp_path, data, *extra):
    return fail("tokenizer", f"data={data}", f"output_dir={tmp_path}/run", "compare=[]",
                "vocab_size=300", *extra)


def test_empty_corpus(fail, tmp_path):
    path = put(tmp_path, "empty.txt", b"")
    assert tok(fail, tmp_path, path).says(str(path), "the corpus is empty")
    assert not (tmp_path / "run").exists()


def test_whitespace_only_corpus_of_two_files(fail, tmp_path):
    put(tmp_path, "a.txt", b"\n\n  \n")
    put(tmp_path, "b.txt", b"\t\r\n")
    assert tok(fail, tmp_path, f"{tmp_path}/*.txt").says("the corpus is empty", "a.txt")


def test_latin1_corpus_names_file_line_and_byte(fail, tmp_path):
    path = put(tmp_path, "latin1.txt", "line one\nCafé crème\n".encode("latin-1"))
    assert tok(fail, tmp_path, path).says(f"{path}:2:", "not UTF-8", "byte 0xe9", "Latin-1")


def test_pattern_matching_no_file(fail, tmp_path):
    assert tok(fail, tmp_path, f"{tmp_path}/nothing/*.txt").says("matches no file")


def test_missing_file(fail, tmp_path):
    assert tok(fail, tmp_path, tmp_path / "gone.txt").says("gone.txt", "no such file")


def test_unknown_corpus_lists_the_known_ones(fail, tmp_path):
    assert tok(fail, tmp_path, "corpus:wikipedia").says("unknown corpus 'wikipedia'",
                                                        "shakespeare")


def test_vocab_smaller_than_bytes_plus_specials(fail, tmp_path):
    path = put(tmp_path, "c.txt", b"some text\n" * 10)
    f = fail("tokenizer", f"data={path}", f"output_dir={tmp_path}/run", "vocab_size=258")
    assert f.says("vocab_size: 258", "byte alphabet (256) plus 3 special token(s) = 259")
    assert f.rc == 2 and not (tmp_path / "run").exists()


def test_wordpiece_vocab_not_above_its_specials(fail, tmp_path):
    path = put(tmp_path, "c.txt", b"some text\n" * 10)
    assert tok(fail, tmp_path, path, "kind=wordpiece", "vocab_size=5").says(
        "vocab_size: 5", "= 6")


def test_chatml_without_its_tokens(fail, tmp_path):
    path = put(tmp_path, "c.txt", b"some text\n" * 10)
    assert tok(fail, tmp_path, path, "special_tokens=[<eos>]", "chat_template=chatml").says(
        "chat_template: chatml needs <|im_start|>")


def test_missing_chat_template_file(fail, tmp_path):
    path = put(tmp_path, "c.txt", b"some text\n" * 10)
    assert tok(fail, tmp_path, path, f"chat_template={tmp_path}/t.jinja").says(
        "t.jinja", "no such file")


def test_unknown_reference(fail, tmp_path):
    path = put(tmp_path, "c.txt", b"some text\n" * 10)
    assert fail("tokenizer", f"data={path}", "compare=[gpt4]").says(
        "compare: unknown reference(s) gpt4")


def test_twin_for_wordpiece(fail, tmp_path):
    path = put(tmp_path, "c.txt", b"some text\n" * 10)
    assert tok(fail, tmp_path, path, "kind=wordpiece", "twin=true").says("twin: the from-scratch twin is byte-level BPE")
