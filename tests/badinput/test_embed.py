"""Bad-input corpus, embeddings: pairs files, document folders, indexes and encoder references
a user could get wrong for `lmlab embed`, `lmlab index` and `generate retrieve=`.

Long inputs are not errors where a text can be cut: training texts and queries longer than the
encoder's context are truncated, counted (summary) or warned about (queries). The HTTP
endpoint refuses them instead (400, tests/serve/test_embeddings.py), as OpenAI does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmlab.cli import main

from .conftest import changes, snapshot


def put(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


@pytest.fixture()
def embed(fail, tmp_path):
    def run(data, *extra):
        return fail("embed", "model=tiny:bert", f"data={data}", "max_steps=1", "batch_size=2",
                    f"output_dir={tmp_path}/run", "progress=false", *extra)

    return run


@pytest.fixture()
def index(fail, tmp_path):
    def run(data, *extra):
        return fail("index", "model=tiny:bert", f"data={data}", f"output_dir={tmp_path}/idx",
                    "progress=false", *extra)

    return run


# --- pairs files ------------------------------------------------------------------------------


@pytest.mark.parametrize("rows,line,field,frag", [
    ([{"anchor": "a", "positive": "b"}, {"anchor": "c"}], 2, "positive", "got missing"),
    ([{"anchor": "a", "positive": ""}], 1, "positive", "got empty"),
    ([{"anchor": "a", "positive": 3}], 1, "positive", "got a int"),
    ([{"query": "a", "doc": "b"}], 1, "anchor", "the row has query, doc"),
    ([{"anchor": "a", "positive": "b", "negative": "n"}, {"anchor": "c", "positive": "d"}], 2,
     "negative", "hard negative in every row or in none"),
])
def test_wrong_pairs_rows_name_file_line_and_field(embed, tmp_path, rows, line, field, frag):
    f = put(tmp_path, "pairs.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    assert embed(f).says(f"{f}:{line}", f"field '{field}'", frag)
    assert not (tmp_path / "run").exists()  # read before the run folder is made


def test_pairs_file_that_is_not_json_or_a_list(embed, tmp_path):
    f = put(tmp_path, "pairs.jsonl", '{"anchor": "a", "positive": "b"}\n{oops\n')
    assert embed(f).says(f"{f}:2", "not valid JSON")
    f = put(tmp_path, "rows.jsonl", '["a", "b"]\n')
    assert embed(f).says(f"{f}:1", "expected an object with {anchor, positive")


def test_sentence_file_for_the_pair_objective(embed, tmp_path):
    f = put(tmp_path, "s.txt", "one sentence\nanother\n")
    assert embed(f).says(str(f), "objective=simcse")
    assert embed(put(tmp_path, "empty.txt", "\n\n"), "objective=simcse").says("no sentences")


def test_empty_or_missing_pairs_file(embed, tmp_path):
    assert embed(put(tmp_path, "e.jsonl", "")).says("e.jsonl", "empty")
    assert embed(tmp_path / "nope.jsonl").says("nope.jsonl", "no such file")
    assert embed("collection:wiki").says("unknown collection 'wiki'", "chatterbot")


def test_unknown_encoder(fail, tmp_path):
    f = put(tmp_path, "p.jsonl", '{"anchor": "a", "positive": "b"}\n')
    assert fail("embed", "model=tiny:gpt", f"data={f}").says("tiny:bert")
    assert fail("embed", f"model={tmp_path}", f"data={f}").says(str(tmp_path),
                                                                 "not an encoder folder")


def test_long_training_texts_are_cut_and_counted(tmp_path):
    f = put(tmp_path, "p.jsonl", "".join(json.dumps({"anchor": "word " * 100, "positive": "b"})
                                         + "\n" for _ in range(4)))
    out = tmp_path / "run"
    assert main(["embed", "model=tiny:bert", f"data={f}", f"output_dir={out}", "max_steps=1",
                 "batch_size=2", "max_len=16", "progress=false"]) == 0
    assert json.loads((out / "summary.json").read_text())["data"]["truncated"] == 4


# --- document folders -------------------------------------------------------------------------


def test_empty_document_folder(index, tmp_path):
    (tmp_path / "docs").mkdir()
    assert index(tmp_path / "docs").says(str(tmp_path / "docs"), "holds no documents")
    put(tmp_path, "docs/.hidden", "x")
    assert index(tmp_path / "docs").says("holds no documents")
    put(tmp_path, "docs/blank.txt", "  \n")
    assert index(tmp_path / "docs").says("no text documents", "1 empty")


def test_binary_files_in_the_folder(index, tmp_path):
    put(tmp_path, "docs/logo.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.warns(UserWarning, match="logo.png"):
        assert index(tmp_path / "docs").says("no text documents: 1 binary")
    put(tmp_path, "docs/a.txt", "Some text.")
    assert index(tmp_path / "docs", "on_binary=error").says("logo.png", "binary file")
    with pytest.warns(UserWarning, match="skipped 1 binary file.*logo.png"):
        assert main(["index", "model=tiny:bert", f"data={tmp_path / 'docs'}",
                     f"output_dir={tmp_path / 'ok'}", "progress=false"]) == 0


def test_text_that_is_not_utf8(index, tmp_path):
    put(tmp_path, "docs/a.txt", "fine\n")
    put(tmp_path, "docs/b.txt", "line one\ncaf\xe9\n".encode("latin-1"))
    assert index(tmp_path / "docs").says("b.txt:2", "not UTF-8")


def test_folder_that_is_a_file_or_missing(index, tmp_path):
    f = put(tmp_path, "doc.txt", "text")
    assert index(f).says(str(f), "is a file")
    assert index(tmp_path / "nope").says("nope", "no such folder")


def test_index_config_problems(fail, tmp_path):
    (tmp_path / "docs").mkdir()
    put(tmp_path, "docs/a.txt", "text")
    assert fail("index", "model=tiny:bert").says("data:", "folder of documents")
    assert fail("index", f"data={tmp_path / 'docs'}", "chunk_tokens=16",
                "overlap=16").says("overlap: 16 must be below chunk_tokens")
    assert fail("index", "model=tiny:bert", f"data={tmp_path / 'docs'}", "chunk_tokens=600",
                f"output_dir={tmp_path / 'i'}").says("chunk_tokens: 600", "at most 510")


def test_query_longer_than_the_context_is_truncated_with_a_warning(tmp_path):
    put(tmp_path, "docs/a.txt", "The capital of Freedonia is Glorpville.")
    with pytest.warns(UserWarning, match="1 of 1 queries are longer than 512 tokens"):
        assert main(["index", "model=tiny:bert", f"data={tmp_path / 'docs'}",
                     f"output_dir={tmp_path / 'i'}", "progress=false",
                     "query=" + "capital " * 600]) == 0


# --- retrieve= --------------------------------------------------------------------------------


def test_retrieve_from_a_folder_that_is_not_an_index(fail, tmp_path):
    earlier = put(tmp_path, "run/samples.jsonl", "{}\n").parent
    before = snapshot(earlier)
    assert fail("generate", "model=tiny:llama", "prompt=hi", f"retrieve={tmp_path}",
                f"output_dir={earlier}", "overwrite=true").says(str(tmp_path), "not an index")
    assert changes(earlier, before) == []
