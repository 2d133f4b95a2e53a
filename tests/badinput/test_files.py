"""Bad-input corpus, files: data and prompt files a user could get wrong, through the CLI.

Each case asserts (via ``fail``) a non-zero exit and no traceback, then that the message names
the file and the line or field. A bad file passed where a run folder already holds an earlier
run (``overwrite=true``, ``resume=auto``) must leave that run as it was: the data is read before
the run folder is touched.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lmlab.cli import main

from .conftest import changes, snapshot

CHAT = ('{"messages": [{"role": "user", "content": "Hi?"}, '
        '{"role": "assistant", "content": "Hello."}]}\n')
PAIR = '{"prompt": "2+2?", "chosen": "4", "rejected": "5"}\n'


def put(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


@pytest.fixture()
def sft(fail, tmp_path):
    """``sft(data, *extra)``: a one-step sft run on ``data`` that must fail cleanly."""

    def run(data, *extra):
        return fail("sft", "model=tiny:llama", f"data={data}", "max_steps=1",
                    f"output_dir={tmp_path}/run", "progress=false", "eval_n=0", *extra)

    return run


# --- encodings ----------------------------------------------------------------------------------


def test_latin1_csv(sft, tmp_path):
    path = put(tmp_path, "excel.csv", "prompt,completion\nCafé?,Oui.\n".encode("latin-1"))
    assert sft(path).says(f"{path}:2:", "not UTF-8", "byte 0xe9", "Latin-1")


def test_bad_byte_in_jsonl_line_3(sft, tmp_path):
    path = put(tmp_path, "d.jsonl", CHAT.encode() * 2 + b'{"prompt": "\xff", "completion": "x"}\n')
    assert sft(path).says(f"{path}:3:", "byte 0xff")


def test_windows_1252_quotes_in_a_prompt_file_for_generate(fail, tmp_path):
    path = put(tmp_path, "prompts.txt", b"First prompt\n\x93Quoted\x94 prompt\n")
    assert fail("generate", "model=tiny:llama", f"data={path}", f"output_dir={tmp_path}/gen").says(
        f"{path}:2:", "byte 0x93")


# --- malformed files ----------------------------------------------------------------------------


def test_malformed_json_line(sft, tmp_path):
    path = put(tmp_path, "d.jsonl", CHAT + '{"messages": [}\n' + CHAT)
    assert sft(path).says(f"{path}:2:", "not valid JSON")


def test_json_file_not_a_list(sft, tmp_path):
    path = put(tmp_path, "d.json", CHAT)
    assert sft(path).says(f"{path}:1:", "must hold a list")


def test_truncated_json_file(sft, tmp_path):
    path = put(tmp_path, "d.json", "[\n" + CHAT.strip() + ",\n" + CHAT.strip()[:30])
    assert sft(path).says(f"{path}:3:", "not valid JSON")


def test_jsonl_row_not_an_object(sft, tmp_path):
    path = put(tmp_path, "d.jsonl", CHAT + '["Hi?", "Hello."]\n')
    assert sft(path).says(f"{path}:2:", "expected a JSON object")


def test_csv_with_extra_cells(sft, tmp_path):
    path = put(tmp_path, "d.csv", "prompt,completion\nHi?,Hello.\nHow are you?,Fine,thanks\n")
    assert sft(path).says(f"{path}:3:", "2 columns in the header but 3 cells")


# --- rows -------------------------------------------------------------------------------------


def test_missing_field(sft, tmp_path):
    path = put(tmp_path, "d.jsonl", '{"prompt": "Hi?", "completion": "Hello."}\n'
                                    '{"prompt": "Bye?"}\n')
    assert sft(path).says(f"{path}:2:", "field 'completion': missing")


def test_wrong_field_type(sft, tmp_path):
    path = put(tmp_path, "d.jsonl", CHAT + '{"prompt": "2+2?", "completion": 4}\n')
    assert sft(path).says(f"{path}:2:", "field 'completion'", "expected a string, got int")


def test_unknown_role(sft, tmp_path):
    path = put(tmp_path, "d.jsonl", CHAT.replace('"user"', '"human"'))
    assert sft(path).says(f"{path}:1:", "field 'messages[0].role'", "unknown role 'human'")


def test_conversation_starting_with_the_assistant(sft, tmp_path):
    row = {"messages": [{"role": "assistant", "content": "Hello."},
                        {"role": "user", "content": "Hi?"},
                        {"role": "assistant", "content": "Hi."}]}
    path = put(tmp_path, "d.jsonl", json.dumps(row) + "\n")
    assert sft(path).says(f"{path}:1:", "field 'messages[0].role'")


def test_rows_matching_no_schema_list_their_columns(sft, tmp_path):
    path = put(tmp_path, "qa.jsonl", '{"question": "2+2?", "answer": "4"}\n')
    assert sft(path).says(f"{path}:1:", "'question', 'answer'", "dolly", "alpaca", "hh-rlhf",
                           "ultrafeedback", "mapping.prompt=question mapping.completion=answer")


def test_preference_row_missing_rejected(fail, tmp_path):
    path = put(tmp_path, "pairs.jsonl", PAIR + '{"prompt": "3+3?", "chosen": "6"}\n')
    assert fail("reward", "model=tiny:llama", f"data={path}", "max_steps=1",
                f"output_dir={tmp_path}/rm").says(f"{path}:2:", "field 'rejected': missing")


def test_a_chat_schema_passed_for_preference_pairs(fail, tmp_path):
    path = put(tmp_path, "dolly.jsonl", json.dumps(
        {"instruction": "Say hi.", "context": "", "response": "Hi."}) + "\n")
    assert fail("dpo", "model=tiny:llama", f"data={path}", "max_steps=1",
                f"output_dir={tmp_path}/dpo").says(f"{path}:1:", "looks like Dolly", "chat rows")


def test_kto_label_not_a_boolean(fail, tmp_path):
    path = put(tmp_path, "kto.jsonl", '{"prompt": "2+2?", "completion": "4", "label": "maybe"}\n')
    assert fail("dpo", "model=tiny:llama", f"data={path}", "data_kind=kto", "loss=kto",
                "max_steps=1", f"output_dir={tmp_path}/kto").says(f"{path}:1:", "field 'label'")


def test_task_row_missing_answer_for_grpo(fail, tmp_path):
    path = put(tmp_path, "tasks.jsonl", '{"prompt": "2+2?", "answer": "4"}\n{"prompt": "3+3?"}\n')
    assert fail("grpo", "model=tiny:llama", f"data={path}", "max_steps=1",
                f"output_dir={tmp_path}/grpo").says(f"{path}:2:", "field 'answer': missing")


def test_task_rows_without_a_task_for_the_task_reward(fail, tmp_path):
    path = put(tmp_path, "tasks.jsonl", '{"prompt": "2+2?", "answer": "4"}\n')
    assert fail("grpo", "model=tiny:llama", f"data={path}", "max_steps=1",
                f"output_dir={tmp_path}/grpo").says(str(path), "field 'task'", "eval_tasks=")
    assert not (tmp_path / "grpo").exists()  # refused before the run folder was made


def test_generate_jsonl_prompt_without_prompt(fail, tmp_path):
    path = put(tmp_path, "p.jsonl", '{"prompt": "Hi?"}\n{"text": "Hi?"}\n')
    assert fail("generate", "model=tiny:llama", f"data={path}", f"output_dir={tmp_path}/gen").says(
        f"{path}:2:", "'prompt'")


# --- files that hold no rows, or are not files --------------------------------------------------


@pytest.mark.parametrize("name,data,says", [
    ("empty.jsonl", "", "the file is empty"),
    ("blank.jsonl", "\r\n\r\n", "no rows"),
    ("none.json", "[]", "no rows"),
    ("header.csv", "\ufeffprompt,completion\r\n", "no rows")])
def test_files_without_rows(sft, tmp_path, name, data, says):
    path = put(tmp_path, name, data)
    assert sft(path).says(str(path), says)


def test_empty_prompt_file_for_generate(fail, tmp_path):
    path = put(tmp_path, "prompts.txt", "\n  \n")
    assert fail("generate", "model=tiny:llama", f"data={path}", f"output_dir={tmp_path}/gen").says(
        str(path), "no prompts")


def test_a_folder_as_data(sft, tmp_path):
    folder = tmp_path / "rows.jsonl"
    folder.mkdir()
    assert sft(folder).says(str(folder), "is a folder")


def test_unknown_extension(sft, tmp_path):
    path = put(tmp_path, "rows.tsv", "prompt\tcompletion\nHi?\tHello.\n")
    assert sft(path).says(str(path), "unsupported file type '.tsv'")


def test_missing_file(sft, tmp_path):
    path = tmp_path / "typo.jsonl"
    assert sft(path).says(f"{path}: no such file")


def test_reference_rows_with_a_bad_byte_for_evaluate(fail, tmp_path):
    path = put(tmp_path, "refs.jsonl", b'{"prompt": "Hi?", "reference": "Hello."}\n'
                                       b'{"prompt": "Caf\xe9?", "reference": "Oui."}\n')
    assert fail("evaluate", "model=tiny:llama", f"sets=[ref:{path}]",
                f"output_dir={tmp_path}/ev").says(f"{path}:2:", "byte 0xe9")


# --- nothing already written is lost ------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished one-step sft run (made once; each test works on its own copy)."""
    root = tmp_path_factory.mktemp("finished")
    data = root / "good.jsonl"
    data.write_text(CHAT * 2)
    out = root / "run"
    rc = main(["sft", "model=tiny:llama", f"data={data}", "max_steps=1", f"output_dir={out}",
               "progress=false", "eval_n=0", "save_every=1"])
    assert rc == 0 and (out / "final").is_dir()
    return out


@pytest.fixture()
def earlier(finished_run, tmp_path) -> Path:
    copy = tmp_path / "earlier"
    shutil.copytree(finished_run, copy)
    return copy


BAD_CHAT = '{"prompt": "Hi?", "completion": "Hello."}\n{"prompt": "Bye?", "completion": 7}\n'


@pytest.mark.parametrize("how", ["overwrite=true", "resume=auto"])
def test_bad_data_leaves_an_earlier_sft_run(fail, tmp_path, earlier, how):
    path = put(tmp_path, "bad.jsonl", BAD_CHAT)
    before = snapshot(earlier)
    assert fail("sft", "model=tiny:llama", f"data={path}", "max_steps=2", f"output_dir={earlier}",
                "progress=false", "eval_n=0", how).says(f"{path}:2:", "field 'completion'")
    assert changes(earlier, before) == []


@pytest.mark.parametrize("stage,extra,data,where", [
    ("reward", (), PAIR + '{"prompt": "3+3?", "chosen": "6"}\n', ":2: field 'rejected'"),
    ("dpo", (), PAIR + '{"prompt": "3+3?", "chosen": "6", "rejected": 6}\n',
     ":2: field 'rejected'"),
    ("dpo", ("data_kind=kto", "loss=kto"), '{"prompt": "a", "completion": "b", "label": 2}\n',
     ":1: field 'label'"),
    ("distill", (), CHAT + CHAT.replace('"assistant"', '"bot"'), ":2: field 'messages[1].role'"),
    ("qat", (), CHAT + '{"messages": []}\n', ":2: field 'messages'"),
    ("grpo", (), '{"prompt": "2+2?", "answer": "4"}\n{"prompt": 5, "answer": "4"}\n',
     ":2: field 'prompt'"),
    ("ppo", ("rewards=[task]",), '{"prompt": "2+2?", "answer": "4"}\n{"answer": "4"}\n',
     ":2: field 'prompt'"),
])
def test_every_training_stage_reads_its_data_before_replacing_a_run(
        fail, tmp_path, earlier, stage, extra, data, where):
    path = put(tmp_path, "bad.jsonl", data)
    before = snapshot(earlier)
    assert fail(stage, "model=tiny:llama", f"data={path}", "max_steps=1", f"output_dir={earlier}",
                "overwrite=true", *extra).says(f"{path}{where}")
    assert changes(earlier, before) == []
