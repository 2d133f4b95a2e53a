"""Bad input to the sft recipes (curriculum, mixtures, replay, continual learning): each a clear
error naming the keys or the file, before any run folder is written."""

import json

import pytest

ARGS = ["sft", "model=tiny:llama", "max_steps=1", "progress=false", "eval_n=0"]


@pytest.fixture()
def phase_a(tmp_path):
    """A finished phase-A run folder without fisher.safetensors."""
    a = tmp_path / "a"
    a.mkdir()
    (a / "config.yaml").write_text("stage: sft\ndata: task:add\n")
    (a / "summary.json").write_text(json.dumps({"stage": "sft"}))
    return a


def test_weights_that_do_not_match_the_sources(fail, tmp_path):
    out = tmp_path / "run"
    assert fail(*ARGS, "data=task:add,sort", "mixture_weights=[1,2,3]",
                f"output_dir={out}").says("mixture_weights", "3 weights for 2 data sources",
                                          "task:add, task:sort")
    assert not out.exists()


def test_negative_or_zero_weights(fail, tmp_path):
    assert fail(*ARGS, "data=task:add,sort", "mixture_weights=[1,-1]",
                f"output_dir={tmp_path / 'r'}").says("mixture_weights", ">= 0")
    assert fail(*ARGS, "data=task:add,sort", "mixture_weights=[0,0]",
                f"output_dir={tmp_path / 'r'}").says("mixture_weights", "positive sum")


def test_mixture_needs_several_sources(fail, tmp_path):
    assert fail(*ARGS, "data=task:add", "mixture_temperature=2",
                f"output_dir={tmp_path / 'r'}").says("mixture_temperature", "one source")


def test_weights_and_temperature_together(fail, tmp_path):
    assert fail(*ARGS, "data=task:add,sort", "mixture_weights=[1,1]", "mixture_temperature=2",
                f"output_dir={tmp_path / 'r'}").says("mixture_weights and mixture_temperature")


def test_negative_lambda(fail, tmp_path, phase_a):
    assert fail(*ARGS, "data=task:sort", "method=full", "continual=l2", "continual_lambda=-1",
                f"continual_from={phase_a}", "eval_tasks=[add,sort]",
                f"output_dir={tmp_path / 'r'}").says("continual_lambda")


@pytest.mark.parametrize("fraction", ["1.5", "-0.1"])
def test_replay_fraction_outside_0_1(fail, tmp_path, fraction):
    assert fail(*ARGS, "data=task:sort", "replay_from=task:add", f"replay_fraction={fraction}",
                f"output_dir={tmp_path / 'r'}").says("replay_fraction")


def test_replay_from_without_a_fraction(fail, tmp_path):
    assert fail(*ARGS, "data=task:sort", "replay_from=task:add",
                f"output_dir={tmp_path / 'r'}").says("replay_from and replay_fraction")


def test_replay_from_a_folder_that_is_not_a_run(fail, tmp_path):
    folder = tmp_path / "notarun"
    folder.mkdir()
    out = tmp_path / "r"
    assert fail(*ARGS, "data=task:sort", f"replay_from={folder}", "replay_fraction=0.2",
                f"output_dir={out}").says(str(folder), "config.yaml")
    assert not out.exists()


def test_missing_fisher_file(fail, tmp_path, phase_a):
    out = tmp_path / "r"
    assert fail(*ARGS, "data=task:sort", "method=full", "continual=ewc",
                f"continual_from={phase_a}", "eval_tasks=[add,sort]",
                f"output_dir={out}").says(str(phase_a / "fisher.safetensors"), "fisher_n")
    assert not out.exists()


def test_continual_from_not_a_finished_run(fail, tmp_path):
    out = tmp_path / "r"
    assert fail(*ARGS, "data=task:sort", "method=full", "continual=sequential",
                f"continual_from={tmp_path / 'nowhere'}", "eval_tasks=[add,sort]",
                f"output_dir={out}").says("continual_from", "no such run folder")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text("stage: sft\ndata: task:add\n")
    assert fail(*ARGS, "data=task:sort", "method=full", "continual=sequential",
                f"continual_from={unfinished}", "eval_tasks=[add,sort]",
                f"output_dir={out}").says(str(unfinished), "no summary.json")
    assert not out.exists()


def test_continual_keys_that_do_not_combine(fail, tmp_path, phase_a):
    r = f"output_dir={tmp_path / 'r'}"
    assert fail(*ARGS, "data=task:sort", "method=lora", "continual=ewc",
                f"continual_from={phase_a}", "eval_tasks=[add,sort]", r).says(
        "continual=ewc", "method=full")
    assert fail(*ARGS, "data=task:sort", "method=full", "continual=l2", "eval_tasks=[add]",
                r).says("continual=l2", "continual_from")
    assert fail(*ARGS, "data=task:sort", "method=full", "continual=l2",
                f"continual_from={phase_a}", r).says("eval_tasks")
    assert fail(*ARGS, "data=task:sort", "method=lora", "fisher_n=8", r).says("fisher_n",
                                                                              "method=full")
    assert fail(*ARGS, "data=task:sort", "method=full", "continual=lora",
                f"continual_from={phase_a}", "eval_tasks=[add,sort]", r).says(
        "continual=lora", "method=lora")


def test_curriculum_that_cannot_apply(fail, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": "hi", "completion": "there"}) + "\n")
    out = tmp_path / "r"
    assert fail(*ARGS, f"data={rows}", "curriculum=params", f"output_dir={out}").says(
        "curriculum=params", "curriculum=loss")
    assert not out.exists()
    assert fail(*ARGS, "data=task:add,sort", "curriculum=params", "mixture_weights=[1,1]",
                f"output_dir={out}").says("curriculum cannot combine")
    assert fail(*ARGS, "data=task:add", "curriculum=params", "packing=true",
                f"output_dir={out}").says("packing")
    assert fail(*ARGS, "data=task:add", "curriculum_pacing=cubic",
                f"output_dir={out}").says("curriculum_pacing")
