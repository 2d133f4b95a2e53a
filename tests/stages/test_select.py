"""`lmlab select`: a coreset of text or chat rows on embeddings of a tiny in-process encoder."""

import json

import pytest

from lmlab.cli import main


def rows_of(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x]


@pytest.fixture()
def text_file(tmp_path):
    lines = [f"line {i}: " + " ".join(["word", "other", "thing"][i % 3] for _ in range(i % 7 + 3))
             for i in range(60)]
    f = tmp_path / "corpus.txt"
    f.write_text("\n".join(lines) + "\n")
    return f


def select(tmp_path, name, *extra):
    out = tmp_path / name
    assert main(["select", "model=tiny:bert", "progress=false", f"output_dir={out}",
                 *map(str, extra)]) == 0
    return out


def test_select_text_chunks_writes_the_kept_rows_in_order(tmp_path, text_file):
    from lmlab.data.documents import load_documents

    out = select(tmp_path, "kc", f"data={text_file}", "chunk_chars=60", "method=kcenter",
                 "fraction=0.25")
    s = json.loads((out / "summary.json").read_text())
    rows = rows_of(out / "selected.jsonl")
    assert s["kept"] == len(rows) == round(0.25 * s["rows"]) and s["rows"] > 8
    idx = json.loads((out / "selection.json").read_text())["indices"]
    assert idx == sorted(idx) and len(set(idx)) == len(idx)
    assert s["cover"]["radius"] >= s["cover"]["mean_distance"] > 0
    # pretraining reads the kept rows as documents, unchanged
    assert load_documents(str(out / "selected.jsonl")) == [r["text"] for r in rows]


def test_reused_embeddings_give_the_same_selection(tmp_path, text_file):
    a = select(tmp_path, "a", f"data={text_file}", "chunk_chars=60", "method=facility",
               "fraction=0.5")
    b = select(tmp_path, "b", f"data={text_file}", "chunk_chars=60", "method=facility",
               "fraction=0.5", f"embeddings={a}")
    assert rows_of(a / "selected.jsonl") == rows_of(b / "selected.jsonl")
    assert json.loads((b / "summary.json").read_text())["embed_seconds"] == 0


def test_select_chat_rows_keeps_them_whole_for_sft(tmp_path):
    chats = [{"messages": [{"role": "user", "content": f"question {i} " + "x" * i},
                           {"role": "assistant", "content": f"answer {i}"}]} for i in range(10)]
    f = tmp_path / "chats.jsonl"
    f.write_text("".join(json.dumps(c) + "\n" for c in chats))
    out = select(tmp_path, "chat", f"data={f}", "kind=chat", "method=random", "fraction=0.3",
                 "seed=1")
    kept = rows_of(out / "selected.jsonl")
    assert len(kept) == 3 and all(k in chats for k in kept)
    assert [chats.index(k) for k in kept] == sorted(chats.index(k) for k in kept)
