"""load_rows: file types, line numbers, mapping presets, located errors, on_error=skip."""

import json
import sys
import types
from pathlib import Path

import pytest

from lmlab.data import load_rows
from lmlab.errors import DataError

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "data"


def asset(name: str) -> str:
    return str(ASSETS / name)


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def load_error(source: str, kind: str = "chat", **kw) -> DataError:
    with pytest.raises(DataError) as info:
        load_rows(source, kind, **kw)
    return info.value


# --- happy paths, one per kind and file type ----------------------------------------------------


def test_chat_jsonl_mixes_messages_and_prompt_completion():
    rows = load_rows(asset("chat.jsonl"), "chat")
    assert len(rows) == 4 and all(set(r) == {"messages"} for r in rows)
    assert [m["role"] for m in rows[2]["messages"]] == ["user", "assistant"] * 2
    assert rows[3]["messages"][0] == {"role": "system", "content": "Be brief."}


@pytest.mark.parametrize("name,kind,n", [("text.jsonl", "text", 3),
                                         ("preference.jsonl", "preference", 3),
                                         ("task.jsonl", "task", 2), ("kto.jsonl", "kto", 2),
                                         ("chat.csv", "chat", 3), ("chat.json", "chat", 2)])
def test_each_kind_and_file_type(name, kind, n):
    rows = load_rows(asset(name), kind)
    assert len(rows) == n and rows.skipped == 0


def test_csv_quoted_cells():
    rows = load_rows(asset("chat.csv"), "chat")
    assert rows[1]["messages"][0]["content"] == 'Spell "cat", please.'


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = str(tmp_path / "rows.parquet")
    pq.write_table(pa.table({"prompt": ["a?", "b?"], "answer": ["1", "2"]}), path)
    assert load_rows(path, "task") == [{"prompt": "a?", "answer": "1"},
                                       {"prompt": "b?", "answer": "2"}]


def test_limit_counts_valid_rows():
    assert len(load_rows(asset("chat.jsonl"), "chat", limit=3)) == 3


def test_dict_mapping_renames_columns(tmp_path):
    path = write(tmp_path, "q.jsonl", '{"question": "2+2?", "solution": "4", "id": 1}\n')
    rows = load_rows(path, "task", mapping={"prompt": "question", "answer": "solution"})
    assert rows == [{"prompt": "2+2?", "answer": "4", "id": 1}]


def test_dict_mapping_missing_column(tmp_path):
    path = write(tmp_path, "q.jsonl", '{"question": "2+2?"}\n')
    err = load_error(path, "task", mapping={"prompt": "question", "answer": "solution"})
    assert f"{path}:1:" in str(err) and err.field == "solution"


def test_task_source_dispatches_to_tasks(monkeypatch):
    calls = []

    def task_rows(names, kind, split, n, seed):
        calls.append((names, kind, split, n, seed))
        return [{"prompt": f"{name} q", "answer": "1"} for name in names]

    monkeypatch.setitem(sys.modules, "lmlab.data.tasks", types.SimpleNamespace(task_rows=task_rows))
    rows = load_rows("task:arith,copy", "task", split="test", limit=5)
    assert calls == [(["arith", "copy"], "task", "test", 5, 0)]
    assert [r["prompt"] for r in rows] == ["arith q", "copy q"]


def test_hub_id_goes_to_datasets(monkeypatch):
    import datasets

    seen = {}

    def fake_load(source, split):
        seen.update(source=source, split=split)
        return [{"text": "from the hub"}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    assert load_rows("org/name", "text", split="validation") == [{"text": "from the hub"}]
    assert seen == {"source": "org/name", "split": "validation"}


def test_hub_failure_is_a_data_error(monkeypatch):
    import datasets

    def fail(source, split):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", fail)
    assert "offline" in str(load_error("org/name", "text"))


# --- mapping presets on fixtures in the public schemas ------------------------------------------


def test_dolly_puts_context_into_the_user_turn():
    rows = load_rows(asset("dolly.jsonl"), "chat", mapping="dolly")
    first, second = rows[0]["messages"], rows[1]["messages"]
    assert first[0]["content"] == ("Who wrote the village chronicle?\n\nThe village chronicle "
                                   "was written by the miller Tomas Vey in 1821.")
    assert first[1] == {"role": "assistant", "content": "Tomas Vey, the miller, wrote it in 1821."}
    assert second[0]["content"] == "List three things you can find at a beach."  # no context
    assert len(rows) == 3


def test_alpaca_json_list():
    rows = load_rows(asset("alpaca.json"), "chat", mapping="alpaca")
    assert rows[0]["messages"][0]["content"] == ("Rewrite the sentence in the past tense.\n\n"
                                                 "The dog runs across the field.")
    assert rows[1]["messages"] == [{"role": "user", "content": "Give one tip for sleeping well."},
                                   {"role": "assistant", "content": "Keep a regular bedtime."}]


def test_hh_rlhf_splits_shared_prefix_from_final_replies():
    rows = load_rows(asset("hh_rlhf.jsonl"), "preference", mapping="hh-rlhf")
    assert rows[0] == {"prompt": [{"role": "user", "content": "How do I keep basil alive?"}],
                       "chosen": "Give it plenty of sun and water it when the soil feels dry.",
                       "rejected": "Basil cannot be kept alive."}
    assert [m["role"] for m in rows[1]["prompt"]] == ["user", "assistant", "user"]
    assert rows[1]["chosen"] == "Something cheerful, like Sea Lark."
    assert rows[1]["rejected"] == "Boats do not have names."


def test_hh_rlhf_as_chat_trains_on_the_chosen_conversation():
    rows = load_rows(asset("hh_rlhf.jsonl"), "chat", mapping="hh-rlhf")
    assert rows[1]["messages"][-1] == {"role": "assistant",
                                       "content": "Something cheerful, like Sea Lark."}


def test_hh_rlhf_diverging_prefix_is_an_error(tmp_path):
    row = {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: X\n\nAssistant: c"}
    path = write(tmp_path, "hh.jsonl", json.dumps(row) + "\n")
    err = load_error(path, "preference", mapping="hh-rlhf")
    assert f"{path}:1:" in str(err) and err.field == "rejected"


def test_ultrafeedback_binarized():
    rows = load_rows(asset("ultrafeedback.jsonl"), "preference", mapping="ultrafeedback")
    assert rows[1] == {"prompt": [{"role": "user", "content": "What is the boiling point of "
                                                              "water at sea level?"}],
                       "chosen": "100 degrees Celsius.", "rejected": "About 50 degrees Celsius."}
    assert len(rows) == 3


def test_preset_for_the_wrong_kind():
    assert "makes chat rows, not preference" in str(
        load_error(asset("dolly.jsonl"), "preference", mapping="dolly"))


def test_unknown_preset():
    assert "unknown mapping preset 'dollie'" in str(
        load_error(asset("dolly.jsonl"), "chat", mapping="dollie"))


# --- malformed data: every message names file:line (and field) ----------------------------------


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.jsonl")
    assert str(load_error(path)) == f"{path}: no such file"


def test_empty_file(tmp_path):
    path = write(tmp_path, "empty.jsonl", "")
    assert str(load_error(path)) == f"{path}: the file is empty"


def test_blank_lines_only_is_empty(tmp_path):
    path = write(tmp_path, "blank.jsonl", "\n\n")
    assert "no rows" in str(load_error(path))


def test_bad_json_line(tmp_path):
    good = '{"text": "a"}\n'
    path = write(tmp_path, "bad.jsonl", good + "\n" + '{"text": "b",}\n' + good)
    err = load_error(path, "text")
    assert str(err).startswith(f"{path}:3: not valid JSON")
    assert err.line == 3


def test_row_not_an_object(tmp_path):
    path = write(tmp_path, "list.jsonl", '{"text": "a"}\n["text", "b"]\n')
    assert str(load_error(path, "text")).startswith(f"{path}:2: expected a JSON object")


def test_missing_field_line_and_field(tmp_path):
    path = write(tmp_path, "m.jsonl", '{"text": "a"}\n{"txt": "b"}\n')
    err = load_error(path, "text")
    assert str(err).startswith(f"{path}:2: field 'text': missing")


def test_wrong_type_deep_field(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant",
                                                              "content": "ok"}]},
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant",
                                                              "content": 42}]}]
    path = write(tmp_path, "t.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    err = load_error(path, "chat")
    assert str(err).startswith(f"{path}:2: field 'messages[1].content': expected a string, got "
                               "int")


def test_csv_line_counts_the_header(tmp_path):
    path = write(tmp_path, "c.csv", "prompt,completion\na,b\nc,\n")
    assert str(load_error(path, "chat")).startswith(f"{path}:3: field 'completion': is empty")


def test_json_list_index_and_bad_top_level(tmp_path):
    path = write(tmp_path, "l.json", '[{"text": "a"}, {"text": 1}]')
    assert str(load_error(path, "text")).startswith(f"{path}:2: field 'text'")
    path = write(tmp_path, "d.json", '{"text": "a"}')
    assert "must hold a list" in str(load_error(path, "text"))


def test_unsupported_extension(tmp_path):
    path = write(tmp_path, "rows.txt", "hello\n")
    assert "unsupported file type '.txt'" in str(load_error(path, "text"))


# --- on_error=skip ------------------------------------------------------------------------------


def test_skip_counts_and_warns_with_locations(tmp_path):
    lines = ['{"text": "a"}', "{oops", '{"text": 3}', '{"text": "b"}', '{"txt": "c"}']
    path = write(tmp_path, "mixed.jsonl", "\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="skipped 3 of 5 rows") as record:
        rows = load_rows(path, "text", on_error="skip")
    assert rows == [{"text": "a"}, {"text": "b"}] and rows.skipped == 3
    message = str(record[0].message)
    for line in (2, 3, 5):
        assert f"{path}:{line}:" in message


def test_skip_everything_bad_still_raises(tmp_path):
    path = write(tmp_path, "allbad.jsonl", '{"txt": 1}\n{"txt": 2}\n')
    with pytest.warns(UserWarning):
        err = load_error(path, "text", on_error="skip")
    assert "all 2 rows are invalid" in str(err)
