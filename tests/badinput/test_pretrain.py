"""Bad input to `lmlab pretrain`: an empty or non-UTF-8 corpus, a context longer than the model
allows, an unknown preset or an impossible combination - each a clear error, nothing written."""

import pytest

ARGS = ["pretrain", "preset=tiny", "max_steps=1", "progress=false", "sample_tokens=0"]


@pytest.fixture()
def text(tmp_path):
    f = tmp_path / "text.txt"
    f.write_text("To be, or not to be, that is the question.\n" * 40)
    return f


def test_empty_corpus(fail, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    out = tmp_path / "run"
    assert fail(*ARGS, f"data={empty}", f"output_dir={out}").says(str(empty),
                                                                   "corpus is empty")
    assert not out.exists()


def test_corpus_not_utf8(fail, tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("line one\ncaf\u00e9\n".encode("latin-1"))
    assert fail(*ARGS, f"data={bad}", f"output_dir={tmp_path / 'run'}").says(
        f"{bad}:2", "not UTF-8")


def test_glob_matching_nothing(fail, tmp_path):
    assert fail(*ARGS, f"data={tmp_path}/*.txt", f"output_dir={tmp_path / 'run'}").says(
        "matches no file")


def test_context_longer_than_the_model_allows(fail, tmp_path, text):
    out = tmp_path / "run"
    assert fail(*ARGS, f"data={text}", "max_len=100", f"output_dir={out}").says(
        "max_len", "100", "longer than the model allows", "32")
    assert not out.exists()


def test_context_longer_than_a_pretrained_model_allows(fail, tmp_path, text):
    assert fail(*ARGS, "model=tiny:llama", f"data={text}", "max_len=4096",
                f"output_dir={tmp_path / 'run'}").says("longer than the model allows", "2048")


def test_unknown_preset(fail, tmp_path, text):
    assert fail(*ARGS, "preset=nanoo", f"data={text}").says("preset", "nanoo",
                                                              "did you mean 'nano'")


def test_corpus_smaller_than_one_window(fail, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("abc\n" * 20)
    assert fail(*ARGS, f"data={short}", "val_data=" + str(short), "context=128",
                f"output_dir={tmp_path / 'run'}").says("fewer than one window")


@pytest.mark.parametrize("extra,words", [
    (["objective=mlm", "position=rope"], ["position", "learned positions only"]),
    (["objective=prefix", "position=alibi"], ["alibi", "prefix"]),
    (["model=tiny:llama", "objective=electra"], ["continued pretraining", "electra"]),
    (["width=30", "heads=4"], ["width", "not divisible"]),
])
def test_impossible_combinations(fail, tmp_path, text, extra, words):
    assert fail(*ARGS, f"data={text}", f"output_dir={tmp_path / 'run'}", *extra).says(*words)
