"""Public schemas without a mapping: detection is a pure function of the first record; a record
with the kind's own fields is never re-mapped; a record that fits none is explained."""

import json
from pathlib import Path

import pytest

from lmlab.data import load_rows
from lmlab.data.presets import PRESETS, detect, detected_line, matches, no_schema_message
from lmlab.errors import DataError

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "data"

DOLLY = {"instruction": "Say hi.", "context": "", "response": "Hi.", "category": "open_qa"}
ALPACA = {"instruction": "Say hi.", "input": "", "output": "Hi."}
HH = {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go"}
UF = {"prompt": "hi", "chosen": [{"role": "user", "content": "hi"},
                                 {"role": "assistant", "content": "hello"}],
      "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "go"}]}


@pytest.mark.parametrize("record,kind,preset", [
    (DOLLY, "chat", "dolly"), (ALPACA, "chat", "alpaca"),
    ({"instruction": "x", "output": "y"}, "chat", "alpaca"),  # input is optional
    (HH, "preference", "hh-rlhf"), (HH, "chat", "hh-rlhf"),
    (UF, "chat", "ultrafeedback"),
])
def test_detects_each_public_schema(record, kind, preset):
    assert detect(record, kind) == preset


@pytest.mark.parametrize("record,kind", [
    # the kind's own fields win over any schema the other columns fit: never re-mapped
    ({**ALPACA, "messages": [{"role": "user", "content": "q"}]}, "chat"),
    ({**DOLLY, "completion": "c"}, "chat"),
    ({**ALPACA, "text": "t"}, "text"),
    (UF, "preference"),  # prompt, chosen, rejected: a preference row as it is
    ({**HH, "prompt": "p"}, "preference"),
    # a schema for another kind
    (DOLLY, "preference"), (ALPACA, "text"), (HH, "task"),
    # ambiguous: fits both dolly and alpaca
    ({"instruction": "x", "output": "y", "response": "z"}, "chat"),
    # near misses: chosen/rejected that are not transcripts; instruction without a reply
    ({"chosen": "yes", "rejected": "no"}, "preference"),
    ({"instruction": "x", "input": "y"}, "chat"),
    ({"question": "q", "answer": "a"}, "chat"),
    ({}, "chat"),
])
def test_does_not_remap(record, kind):
    assert detect(record, kind) is None


def test_matches_lists_every_fitting_schema():
    assert matches({"instruction": "x", "output": "y", "response": "z"}) == ["dolly", "alpaca"]
    assert matches({"chosen": "yes", "rejected": "no"}) == []
    assert matches(HH) == ["hh-rlhf"] and matches(UF) == ["ultrafeedback"]


def test_detected_line_names_file_schema_columns_and_preset():
    assert detected_line("alpaca", ALPACA, "data.jsonl") == (
        "[lmlab] data.jsonl looks like Alpaca (instruction, input, output): using mapping=alpaca")
    # only the columns the record has
    assert detected_line("dolly", {"instruction": "x", "response": "y"}, "d.csv") == (
        "[lmlab] d.csv looks like Dolly (instruction, response): using mapping=dolly")


def test_no_schema_message_lists_columns_presets_and_a_mapping():
    msg = no_schema_message({"question": "q", "answer": "a"}, "chat")
    assert "this row has columns 'question', 'answer'" in msg
    for name in PRESETS:
        assert name in msg
    assert "mapping.prompt=question mapping.completion=answer" in msg
    assert "mapping: {prompt: question, completion: answer}" in msg


def test_no_schema_message_for_another_kind_and_ambiguous():
    assert "looks like Dolly (mapping=dolly), which makes chat rows, not preference rows" in (
        no_schema_message(DOLLY, "preference"))
    assert "more than one preset (dolly, alpaca)" in no_schema_message(
        {"instruction": "x", "output": "y", "response": "z"}, "chat")


# --- through load_rows --------------------------------------------------------------------------


@pytest.mark.parametrize("name,kind,preset", [
    ("dolly.jsonl", "chat", "dolly"), ("alpaca.json", "chat", "alpaca"),
    ("hh_rlhf.jsonl", "preference", "hh-rlhf"), ("hh_rlhf.jsonl", "chat", "hh-rlhf"),
    ("ultrafeedback.jsonl", "chat", "ultrafeedback")])
def test_without_mapping_equals_with_the_preset(name, kind, preset, capsys):
    path = str(ASSETS / name)
    auto = load_rows(path, kind)
    out = capsys.readouterr().out
    assert out.splitlines() == [detected_line(preset, _first(path), path)]
    assert auto == load_rows(path, kind, mapping=preset)
    assert capsys.readouterr().out == ""  # a mapping given: nothing to announce


def _first(path: str) -> dict:
    text = Path(path).read_text()
    return json.loads(text)[0] if path.endswith(".json") else json.loads(text.splitlines()[0])


def test_alpaca_csv_without_mapping(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text('instruction,input,output\nTranslate.,Hello,Bonjour\n"Say ""hi"".",,hi\n')
    rows = load_rows(str(path), "chat")
    assert rows[0]["messages"][0]["content"] == "Translate.\n\nHello"
    assert rows[1]["messages"] == [{"role": "user", "content": 'Say "hi".'},
                                   {"role": "assistant", "content": "hi"}]


def test_own_fields_are_kept_even_next_to_schema_columns(tmp_path, capsys):
    row = {**ALPACA, "prompt": "p", "completion": "c"}
    path = tmp_path / "own.jsonl"
    path.write_text(json.dumps(row) + "\n")
    rows = load_rows(str(path), "chat")
    assert rows[0]["messages"][0] == {"role": "user", "content": "p"}
    assert capsys.readouterr().out == ""


def test_no_schema_is_a_located_error_listing_columns(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "2+2?", "answer": "4"}\n')
    with pytest.raises(DataError) as info:
        load_rows(str(path), "chat")
    err = info.value
    assert (err.file, err.line, err.field) == (str(path), 1, "messages")
    assert "'question', 'answer'" in str(err) and "dolly" in str(err)


def test_a_custom_dict_mapping_reads_the_same_file(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "2+2?", "answer": "4"}\n')
    rows = load_rows(str(path), "chat", mapping={"prompt": "question", "completion": "answer"})
    assert rows == [{"messages": [{"role": "user", "content": "2+2?"},
                                  {"role": "assistant", "content": "4"}]}]


def test_foreign_rows_get_the_long_message_and_forgetful_ones_the_plain_one():
    from lmlab.data.presets import foreign

    assert foreign({"question": "q", "answer": "a"}, "chat")
    assert foreign({"question": "q", "answer": "a"}, "task")  # task rows need a prompt
    assert foreign({"txt": "t"}, "text")
    assert not foreign({"prompt": "p"}, "chat")  # forgot the completion: the plain 'missing'
    assert not foreign({"system": "s", "prompt": "p"}, "chat")
    assert not foreign({"prompt": "p", "chosen": "c"}, "preference")  # own fields
    assert not foreign({}, "chat")
