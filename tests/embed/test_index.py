"""Chunking boundaries, reading a document folder, index save/load, `lmlab index`."""

import itertools
import json

import pytest
import torch

from lmlab.cli import main
from lmlab.embed.index import Index, chunk_text, read_documents, windows


def test_windows_cover_everything_with_the_overlap():
    assert windows(10, 4, 1) == [(0, 4), (3, 7), (6, 10)]
    assert windows(10, 4, 0) == [(0, 4), (4, 8), (8, 10)]
    assert windows(4, 4, 2) == [(0, 4)]
    assert windows(5, 4, 2) == [(0, 4), (2, 5)]
    assert windows(0, 4, 1) == []
    with pytest.raises(ValueError):
        windows(10, 4, 4)


def test_windows_move_back_to_word_boundaries():
    # tokens 0..9; words: [0,1,2] [3] [4,5] [6,7,8,9]: a window may cut at 0,3,4,6,10
    cuts = [i in (0, 3, 4, 6, 10) for i in range(11)]
    assert windows(10, 5, 1, cuts) == [(0, 4), (3, 6), (6, 10)]
    # a word longer than a window is cut where it must be
    assert windows(6, 2, 0, [True] + [False] * 5 + [True]) == [(0, 2), (2, 4), (4, 6)]


def test_chunk_text_quotes_the_document_and_keeps_words_whole():
    from lmlab.embed.model import load_encoder

    _, tok = load_encoder("tiny:bert")
    text = "Freedonia's capital is Glorpville, famous for its unbelievably long bridges."
    chunks = chunk_text(tok, text, 6, 2)
    assert chunks[0][0] == 0 and chunks[-1][1] == len(text)
    def inside_a_word(i):
        return 0 < i < len(text) and text[i - 1].isalnum() and text[i].isalnum()

    for s, e, t in chunks:
        assert t == text[s:e]
        assert not inside_a_word(s) and not inside_a_word(e)
    pairs = list(itertools.pairwise(chunks))
    assert all(a[1] < b[1] and not text[a[1]:b[0]].strip() for a, b in pairs)  # only spaces
    assert any(b[0] < a[1] for a, b in pairs)  # and some text is in two chunks


def test_read_documents(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("beta")
    (tmp_path / "sub" / "a.md").write_text("alpha")
    (tmp_path / ".hidden").write_text("secret")
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.warns(UserWarning, match=r"skipped 1 binary file\(s\) .*img.png"):
        docs = read_documents(tmp_path)
    assert docs == [("b.txt", "beta"), ("sub/a.md", "alpha")]


def test_index_save_load_equal_and_search(tmp_path):
    idx = Index([{"doc": "a", "start": 0, "end": 1, "text": "ü"},
                 {"doc": "b", "start": 0, "end": 2, "text": "xy"}],
                torch.nn.functional.normalize(torch.randn(2, 8), dim=-1),
                {"encoder": "tiny:bert", "chunk_tokens": 4})
    idx.save(tmp_path / "index")
    again = Index.load(tmp_path)  # the run folder or its index/
    assert torch.equal(again.embeddings, idx.embeddings)
    assert again.chunks == idx.chunks and again.meta == idx.meta
    hits = again.search(idx.embeddings[1:2], 2)
    assert hits[0][0][0] == 1 and hits[0][0][1] == pytest.approx(1.0, abs=1e-6)


def test_index_stage_builds_searches_and_reloads(tmp_path):
    from lmlab.embed.rag import Retriever

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The capital of Freedonia is Glorpville. " * 5)
    (docs / "b.txt").write_text("Sylvania exports cheese and violins.")
    out = tmp_path / "run"
    rc = main(["index", "model=tiny:bert", f"data={docs}", f"output_dir={out}",
               "chunk_tokens=16", "overlap=4", "progress=false", "query=capital of Freedonia"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["docs"] == 2 and s["chunks"] >= 3 and len(s["query"]["hits"]) == 3
    r = Retriever.from_run(str(out))
    assert r.index.meta["encoder"] == "tiny:bert" and len(r.index.chunks) == s["chunks"]
    hits = r.retrieve(["Sylvania exports cheese and violins."], 1)[0]
    assert hits[0]["doc"] == "b.txt" and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
