"""Bad configs through the CLI: each names the file, the line or the key, exits non-zero with no
traceback, and leaves the run folder already in ``output_dir`` as it was. Then the good inputs
that used to fail: a BOM + CRLF YAML, and a CSV's own columns mapped from YAML or overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lmlab.cli import main
from lmlab.config import load_config
from lmlab.stages.sft import Config as SFTConfig
from tests.badinput.conftest import changes, snapshot

TINY = "model=tiny:llama"
QA = "question,answer\n" + "".join(f"What is {i} + {i}?,{2 * i}\n" for i in range(6))


@pytest.fixture()
def prior(tmp_path) -> Path:
    """A run folder written before the bad command (a finished sft run, in miniature)."""
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    (run / "config.yaml").write_text("stage: sft\nlr: 0.0002\n")
    (run / "metrics.jsonl").write_text('{"step": 1, "train/loss": 2.5}\n')
    (run / "final" / "model.safetensors").write_bytes(b"\x00weights\x01")
    return run


@pytest.fixture()
def sft(fail, prior):
    """``sft(*args)``: ``lmlab sft model=tiny:llama output_dir=<prior> *args`` must fail and
    leave the prior run untouched."""

    def run(*args):
        before = snapshot(prior)
        result = fail("sft", TINY, f"output_dir={prior}", *args)
        assert changes(prior, before) == []
        return result

    return run


def write(tmp_path, name: str, text: str | bytes) -> Path:
    f = tmp_path / name
    (f.write_bytes if isinstance(text, bytes) else f.write_text)(text)
    return f


# --- overrides on the command line --------------------------------------------------------------


def test_unknown_key_suggests_the_known_one(sft):
    assert sft("max_stepz=3").says("unknown key 'max_stepz'", "did you mean 'max_steps'?")


def test_wrong_type(sft):
    assert sft("batch_size=two").says("batch_size: expected an integer, got 'two'")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", ".nan", "NaN", "-.inf"])
def test_learning_rate_that_is_not_finite(sft, value):
    assert sft(f"lr={value}").says("lr: must be a finite number, not nan or inf")


def test_negative_learning_rate(sft):
    assert sft("lr=-0.001").says("lr: -0.001 is out of range (must be > 0.0)")


def test_int_out_of_range(sft):
    assert sft("lora_r=0").says("lora_r: 0 is out of range (must be >= 1)")


def test_bool_given_maybe(sft):
    assert sft("packing=maybe").says("packing: expected true or false, got 'maybe'")


def test_unknown_choice_suggests_the_close_one(sft):
    assert sft("method=lorra").says("method: 'lorra' is not one of full, lora, qlora",
                                     "did you mean 'lora'?")


def test_mapping_with_an_unknown_field(sft):
    assert sft("mapping.promt=question").says("mapping: unknown field 'promt'",
                                               "did you mean 'prompt'?")


def test_mapping_set_as_a_preset_and_by_entries(sft):
    assert sft("mapping=dolly", "mapping.prompt=question").says("mapping: given as 'dolly'")


def test_dotted_key_on_a_key_that_is_not_a_mapping(sft):
    assert sft("lr.max=1").says("lr.max: lr is a float, not a mapping")


def test_override_without_a_key(sft):
    assert sft("=3").says("'=3' has no key before '='")


def test_config_flag_without_a_file(fail):
    assert fail("sft", "--config").says("--config needs a file")


def test_all_problems_are_listed_at_once(sft, tmp_path):
    f = write(tmp_path, "c.yaml", "lr: .nan\nlora_targets: q_proj\n")
    r = sft("--config", f, "max_stepz=3", "method=lorra", "lora_r=0", "packing=maybe",
            "nokeyvalue")
    assert r.says(str(f), "lr:", "lora_targets:", "max_stepz", "method:", "lora_r:", "packing:",
                   "'nokeyvalue' is not key=value")
    assert r.err.count("\n  - ") == 7, r.err


# --- YAML files ---------------------------------------------------------------------------------


def test_yaml_nan(sft, tmp_path):
    f = write(tmp_path, "c.yaml", "max_steps: 2\nlr: .nan\n")
    assert sft("--config", f).says(str(f), "lr: must be a finite number")


def test_yaml_with_a_tab_in_the_indentation(sft, tmp_path):
    f = write(tmp_path, "c.yaml", "lr: 0.001\nmapping:\n  prompt: question\n\tcompletion: a\n")
    assert sft("--config", f).says(f"{f}:4: a tab in the indentation; YAML indents with spaces")


def test_yaml_with_a_key_given_twice(sft, tmp_path):
    f = write(tmp_path, "c.yaml", "lr: 0.001\nmax_steps: 2\nlr: 0.01\n")
    assert sft("--config", f).says(f"{f}:3: key 'lr' is given twice (lines 1 and 3)")


def test_yaml_syntax_error(sft, tmp_path):
    f = write(tmp_path, "c.yaml", "lr: 0.001\n max_steps: 2\n")
    assert sft("--config", f).says(f"{f}:2:", "not valid YAML")


def test_yaml_that_is_a_list(sft, tmp_path):
    f = write(tmp_path, "c.yaml", "- lr: 0.001\n- max_steps: 2\n")
    assert sft("--config", f).says(str(f), "must hold a mapping of key: value, not a list")


def test_yaml_with_bytes_that_are_not_utf8(sft, tmp_path):
    f = write(tmp_path, "c.yaml", b"lr: 0.001\noutput_dir: caf\xe9\n")
    assert sft("--config", f).says(f"{f}:2: not UTF-8: byte 0xe9")


def test_missing_config_file(sft, tmp_path):
    assert sft("--config", tmp_path / "nope.yaml").says(f"{tmp_path / 'nope.yaml'} does not exist")


def test_config_that_is_a_folder(sft, tmp_path):
    (tmp_path / "configs").mkdir()
    assert sft("--config", tmp_path / "configs").says(f"{tmp_path / 'configs'} is a folder")


def test_yaml_string_where_a_list_is_expected(sft, tmp_path):
    f = write(tmp_path, "c.yaml", "lora_targets: q_proj\n")
    assert sft("--config", f).says(str(f), "lora_targets: expected a list, got 'q_proj'")


def test_yaml_boolean_where_text_is_expected(sft, tmp_path):
    f = write(tmp_path, "c.yaml", "resume: no\n")  # YAML 1.1 reads an unquoted no as false
    assert sft("--config", f).says("resume: expected a string", "quote it")


def test_yaml_mapping_with_a_source_that_is_not_a_column_name(sft, tmp_path):
    f = write(tmp_path, "c.yaml", "mapping:\n  prompt: [question, title]\n  completion: 7\n")
    assert sft("--config", f).says(str(f),
                                   "mapping.prompt: expected a string, got ['question', 'title']",
                                   "mapping.completion: expected a string, got 7")


def test_config_saved_by_another_stage(sft, tmp_path):
    f = write(tmp_path, "config.yaml", "stage: dpo\nlr: 0.0001\n")
    assert sft("--config", f).says(str(f), "this config is for 'dpo', not 'sft'")


def test_pipeline_with_a_bad_step(fail, tmp_path):
    out = tmp_path / "p"
    (out / "sft").mkdir(parents=True)
    (out / "pipeline.json").write_text('{"steps": []}\n')
    before = snapshot(out)
    f = write(tmp_path, "p.yaml", yaml.safe_dump({"output_dir": str(out), "steps": [
        {"name": "sft", "stage": "sft", "overrides": {"model": "tiny:llama", "lr": 0.01}},
        {"name": "dpo", "stage": "dpoo", "overrides": {"model": "${sft}"}},
        {"name": "rm", "stage": "reward", "overrides": {"lr": float("nan")}}]}))
    r = fail("pipeline", "--config", f)
    assert r.says(str(f), "step 2 (dpo): unknown stage 'dpoo' (did you mean 'dpo'?)",
                   "step 3 (rm): lr: must be a finite number")
    assert r.rc == 2
    assert changes(out, before) == []


def test_pipeline_step_recipe_with_a_tab(fail, tmp_path):
    recipe = write(tmp_path, "sft.yaml", "model: tiny:llama\nmapping:\n\tprompt: q\n")
    f = write(tmp_path, "p.yaml", yaml.safe_dump({"output_dir": str(tmp_path / "p"), "steps": [
        {"name": "a", "stage": "sft", "config": str(recipe)}]}))
    assert fail("pipeline", "--config", f).says(f"step 1 (a): {recipe}:3: a tab in the indentation")
    assert not (tmp_path / "p").exists()


# --- a mapping that the data does not match: named where the data is read -----------------------


def test_mapping_to_a_column_the_data_lacks(fail, tmp_path):
    data = write(tmp_path, "qa.csv", QA)
    r = fail("sft", TINY, f"data={data}", f"output_dir={tmp_path / 'new'}", "max_steps=1",
             "mapping.prompt=question", "mapping.completion=reply")
    assert r.says(f"{data}:2:", "'reply'", "'question', 'answer'")


# --- good inputs ---------------------------------------------------------------------------------


def test_yaml_with_a_bom_and_crlf_is_the_same_config(tmp_path):
    body = ("# Windows Notepad\nlr: 0.001\nmax_steps: 7\nlora_targets:\n  - q_proj\n"
            "mapping:\n  prompt: question\n  completion: answer\n")
    plain = write(tmp_path, "plain.yaml", body)
    windows = write(tmp_path, "win.yaml", b"\xef\xbb\xbf" + body.replace("\n", "\r\n").encode())
    a, b = load_config(SFTConfig, plain), load_config(SFTConfig, windows)
    assert a == b and a.lr == 0.001 and a.mapping == {"prompt": "question",
                                                      "completion": "answer"}


def _trains(tmp_path, name: str, *args) -> dict:
    out = tmp_path / name
    rc = main(["sft", TINY, "max_steps=1", "batch_size=2", "eval_n=0", f"output_dir={out}",
               *map(str, args)])
    assert rc == 0
    assert (out / "final").is_dir() and (out / "summary.json").is_file()
    return yaml.safe_load((out / "config.yaml").read_text())


def test_a_csv_with_its_own_columns_trains_with_a_mapping_from_yaml(tmp_path):
    data = write(tmp_path, "qa.csv", QA)
    recipe = write(tmp_path, "qa.yaml", (f"data: {data}\nmapping:\n  prompt: question\n"
                                         "  completion: answer\n").replace("\n", "\r\n"))
    saved = _trains(tmp_path, "yaml", "--config", recipe)
    assert saved["mapping"] == {"prompt": "question", "completion": "answer"}


def test_a_csv_with_its_own_columns_trains_with_dotted_overrides(tmp_path, capsys):
    data = write(tmp_path, "qa.csv", QA)
    saved = _trains(tmp_path, "cli", f"data={data}", "mapping.prompt=question",
                    "mapping.completion=answer")
    assert saved["mapping"] == {"prompt": "question", "completion": "answer"}
    assert "data: 6 rows" in capsys.readouterr().out
