"""Bad command lines: each fails with a usage or config error naming the argument, no
traceback, nothing written; every stage's --help (and -h after other arguments) exits 0."""

import pytest

from lmlab.cli import main
from lmlab.stages import STAGES


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a case that wrongly ran would write runs/ here, not in the repo


def test_unknown_stage_suggests_the_closest(fail):
    assert fail("sfft", "max_steps=1").says("unknown stage 'sfft'", "did you mean 'sft'")


def test_an_option_before_the_stage(fail):
    assert fail("--foo", "sft").says("'--foo'", "the stage comes first")


def test_unknown_double_dash_option(fail):
    assert fail("sft", "--foo").says("--foo", "key=value", "lmlab sft --help")


def test_unknown_single_dash_option(fail):
    assert fail("generate", "-x", "prompt=hi").says("-x", "key=value")


def test_config_with_no_file(fail):
    assert fail("sft", "--config").says("--config needs a file")


def test_config_followed_by_an_option(fail):
    assert fail("sft", "--config", "-h").says("--config needs a file")


def test_config_empty_after_equals(fail):
    assert fail("sft", "--config=", "max_steps=1").says("--config needs a file")


def test_config_that_does_not_exist(fail, tmp_path):
    assert fail("sft", "--config", tmp_path / "nope.yaml").says(str(tmp_path / "nope.yaml"))


def test_config_given_a_run_folder(fail, tmp_path):
    run = tmp_path / "runs" / "sft-x"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("stage: sft\n")
    assert fail("sft", "--config", run).says(f"{run} is a folder",
                                             f"did you mean {run}/config.yaml")


def test_a_positional_where_key_value_is_expected(fail):
    assert fail("sft", "tiny:llama").says("'tiny:llama' is not key=value")


def test_empty_value_for_an_int_key(fail):
    f = fail("sft", "max_steps=")
    assert f.says("max_steps", "integer")
    assert f.rc == 2  # a config error


def test_empty_value_for_a_float_key(fail):
    assert fail("sft", "lr=").says("lr", "number")


def test_a_word_for_an_int_key(fail):
    assert fail("sft", "max_steps=ten").says("max_steps", "'ten'")


def test_unknown_key_suggests_the_closest(fail):
    assert fail("sft", "max_step=3").says("unknown key 'max_step'", "did you mean 'max_steps'")


def test_dashed_key_value_with_an_unknown_key(fail):
    assert fail("sft", "--max_step=3").says("unknown key 'max_step'")


def test_bench_with_an_unknown_positional(fail):
    assert fail("bench", "nonsense").says("'nonsense'", "generate", "serve")


def test_generate_prompt_longer_than_the_context(fail, tmp_path):
    """tiny:llama's context is 2048 tokens; the message gives the prompt's length (with its chat
    template: not pinned here) and the context's, before any decoding."""
    assert fail("generate", "model=tiny:llama", "prompt=" + "word " * 2100, "max_new_tokens=4",
                f"output_dir={tmp_path / 'out'}").says("prompts[0] has", "max_new_tokens=4",
                                                        "context of 2048 tokens")


def test_generate_prompt_file_line_longer_than_the_context(fail, tmp_path):
    """A prompt file's long line is named by file:line, and an earlier run in output_dir stays as
    it was (the check runs before the run folder is touched)."""
    from tests.badinput.conftest import changes, snapshot

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("short one\n\n" + "word " * 2100 + "\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "samples.jsonl").write_text('{"prompt": "earlier", "completion": "kept"}\n')
    before = snapshot(out)
    assert fail("generate", "model=tiny:llama", f"data={prompts}", "max_new_tokens=4",
                f"output_dir={out}", "overwrite=true").says(f"{prompts}:3: the prompt has",
                                                             "context of 2048 tokens")
    assert changes(out, before) == []


# --- help exits 0 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_stage_help_exits_0(stage, capsys):
    assert main([stage, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"lmlab {stage}: ") and "keys:" in out


def test_short_help_after_other_arguments(capsys):
    assert main(["generate", "model=tiny:llama", "prompt=hi", "-h"]) == 0
    assert capsys.readouterr().out.startswith("lmlab generate: ")


def test_main_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "stages:" in capsys.readouterr().out
