"""Bad-input corpus, chain-of-thought data and self-instruct: a wrong task option, a task
without worked solutions, a bad seed file or impossible limits fail before any work, with a
message naming the key, the file and line, or the field."""

from __future__ import annotations

import json


def test_bad_cot_value(fail, tmp_path):
    got = fail("sft", "model=tiny:llama", "data=task:add?cot=2", f"output_dir={tmp_path / 's'}")
    assert got.says("cot", "0, 1, true, false", "'2'")
    assert not (tmp_path / "s").exists()


def test_unknown_task_option(fail, tmp_path):
    got = fail("sft", "model=tiny:llama", "data=task:add,sort?chain=1",
               f"output_dir={tmp_path / 's'}")
    assert got.says("unknown task option 'chain'", "cot")
    assert not (tmp_path / "s").exists()


def test_cot_for_a_task_without_worked_solutions(fail, tmp_path):
    got = fail("sft", "model=tiny:llama", "data=task:concise?cot=1",
               f"output_dir={tmp_path / 's'}")
    assert got.says("concise", "no worked solutions", "add, sub")
    assert not (tmp_path / "s").exists()


def _seeds(tmp_path, *lines: str):
    path = tmp_path / "seeds.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_seed_row_without_output(fail, tmp_path):
    path = _seeds(tmp_path, json.dumps({"instruction": "Say hi.", "output": "Hi"}),
                  json.dumps({"instruction": "Say bye."}))
    got = fail("self-instruct", "model=tiny:llama", f"data={path}",
               f"output_dir={tmp_path / 'si'}")
    assert got.says(f"{path}:2", "output", "missing")
    assert not (tmp_path / "si").exists()


def test_seed_row_not_json_or_not_text(fail, tmp_path):
    path = _seeds(tmp_path, "{instruction: Say hi}")
    assert fail("self-instruct", "model=tiny:llama", f"data={path}").says(f"{path}:1", "JSON")
    path = _seeds(tmp_path, json.dumps({"instruction": 7, "output": "Hi"}))
    assert fail("self-instruct", "model=tiny:llama", f"data={path}").says(
        f"{path}:1", "instruction", "expected a string")


def test_missing_or_empty_seed_file(fail, tmp_path):
    assert fail("self-instruct", "model=tiny:llama", f"data={tmp_path / 'no.jsonl'}").says(
        "no.jsonl")
    path = _seeds(tmp_path, "")
    assert fail("self-instruct", "model=tiny:llama", f"data={path}").says(
        str(path), "no seed tasks")


def test_impossible_limits(fail, tmp_path):
    assert fail("self-instruct", "model=tiny:llama", "target=10", "max_generated=5").says(
        "target", "max_generated")
    assert fail("self-instruct", "model=tiny:llama", "min_words=10", "max_words=5").says(
        "min_words", "max_words")
    assert fail("self-instruct", "model=tiny:llama", "novelty=1.5").says("novelty")
    assert fail("self-instruct", "model=tiny:llama", "judge=tiny:llama").says(
        "judge", "judge_min_score")
    assert fail("self-instruct", "model=tiny:llama", "principles=p.txt").says(
        "principles", "revise=true")


def test_unknown_model_fails_before_the_run_folder(fail, tmp_path):
    got = fail("self-instruct", "model=tiny:nope", f"output_dir={tmp_path / 'si'}")
    assert got.says("nope")
    assert not (tmp_path / "si").exists()


def test_misspelt_gsm8k_strict_set(fail, tmp_path):
    got = fail("evaluate", "model=tiny:llama", "sets=gsm8k-strit",
               f"output_dir={tmp_path / 'ev'}")
    assert got.says("gsm8k-strit", "gsm8k-strict")
