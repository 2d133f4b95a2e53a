"""Bad-input corpus, `lmlab select`: a fraction out of range, an unknown method, no or empty
data, embeddings from other rows. Each a clean error naming the key; nothing embedded first
where the config alone is wrong."""

from __future__ import annotations

import pytest


@pytest.fixture()
def corpus(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("".join(f"line {i} with some words in it\n" for i in range(40)))
    return f


@pytest.fixture()
def select(fail, tmp_path):
    def run(*extra):
        return fail("select", "model=tiny:bert", "progress=false",
                    f"output_dir={tmp_path}/run", *extra)

    return run


@pytest.mark.parametrize("fraction", ["0", "1.5", "-0.2"])
def test_fraction_out_of_range(select, corpus, fraction):
    assert select(f"data={corpus}", f"fraction={fraction}").says("fraction")


def test_unknown_method_names_the_choices(select, corpus):
    assert select(f"data={corpus}", "method=kmeans").says("method", "kcenter", "facility",
                                                          "random")


def test_no_data(select):
    assert select("data=").says("data")


def test_empty_corpus(select, tmp_path):
    f = tmp_path / "empty.txt"
    f.write_text("\n\n")
    assert select(f"data={f}").says("empty", str(f))


def test_embeddings_of_other_rows(select, corpus, tmp_path):
    from lmlab.cli import main

    assert main(["select", "model=tiny:bert", "progress=false", f"data={corpus}",
                 "chunk_chars=100", f"output_dir={tmp_path}/first"]) == 0
    assert select(f"data={corpus}", "chunk_chars=60", f"embeddings={tmp_path}/first").says(
        "embeddings", "rows")


def test_embeddings_file_missing(select, corpus, tmp_path):
    assert select(f"data={corpus}", f"embeddings={tmp_path}/nope.pt").says("embeddings",
                                                                          "nope.pt")
