"""Bad-input corpus, run folders and checkpoints: what a user (or a crash) can leave in
``output_dir`` and ``resume``. Each case: a non-zero exit, no traceback, the message names the
folder or file, and nothing already written is lost (``snapshot`` / ``changes``)."""

from __future__ import annotations

import shutil

import pytest
import torch

from lmlab.cli import main

from .conftest import changes, snapshot

TINY = ["model=tiny:llama", "data_limit=16", "eval_n=0", "batch_size=2", "max_len=64",
        "max_steps=2", "progress=false"]


@pytest.fixture(scope="module")
def done_run(tmp_path_factory):
    """A finished two-step sft run with checkpoints at steps 1 and 2."""
    out = tmp_path_factory.mktemp("done") / "run"
    assert main(["sft", *TINY, "save_every=1", f"output_dir={out}"]) == 0
    return out


@pytest.fixture()
def run_copy(done_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(done_run, out)
    return out


def sft(fail, out, *extra):
    return fail("sft", *TINY, f"output_dir={out}", *extra)


def test_resume_folder_that_does_not_exist(fail, tmp_path):
    missing = tmp_path / "nope" / "step-3"
    assert sft(fail, tmp_path / "run", f"resume={missing}").says(str(missing), "does not exist")


def test_resume_folder_that_is_a_run_not_a_checkpoint(fail, run_copy, tmp_path):
    before = snapshot(run_copy)
    assert sft(fail, tmp_path / "new", f"resume={run_copy}").says(
        str(run_copy), "not a checkpoint folder",
        f"did you mean {run_copy}/checkpoints/step-2")
    assert changes(run_copy, before) == []


def test_checkpoint_missing_its_optimizer_state(fail, run_copy, tmp_path):
    ckpt = run_copy / "checkpoints" / "step-2"
    state = torch.load(ckpt / "state.pt", weights_only=False)
    del state["optimizer"]
    torch.save(state, ckpt / "state.pt")
    before = snapshot(run_copy)
    assert sft(fail, tmp_path / "new", f"resume={ckpt}").says(f"{ckpt}/state.pt", "lacks optimizer")
    assert changes(run_copy, before) == []


def test_truncated_state_file(fail, run_copy, tmp_path):
    file = run_copy / "checkpoints" / "step-2" / "state.pt"
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    before = snapshot(run_copy)
    del before["config.yaml"]  # a resume writes its own resolved config (resume: auto) first
    assert sft(fail, run_copy, "resume=auto").says(str(file), "cannot be read", "truncated")
    assert changes(run_copy, before) == []


def test_state_file_that_is_not_a_checkpoint(fail, run_copy, tmp_path):
    file = run_copy / "checkpoints" / "step-2" / "state.pt"
    torch.save(torch.zeros(3), file)
    assert sft(fail, tmp_path / "new", f"resume={file.parent}").says(
        str(file), "not an lmlab checkpoint")


def test_checkpoint_of_another_method(fail, run_copy, tmp_path):
    """A LoRA run's checkpoint passed to a full fine-tune: the weights do not match."""
    ckpt = run_copy / "checkpoints" / "step-2"
    assert sft(fail, tmp_path / "new", f"resume={ckpt}", "method=full").says(
        str(ckpt), "another model or method")


def test_output_dir_that_holds_another_stages_run(fail, run_copy):
    before = snapshot(run_copy)
    assert fail("dpo", "model=tiny:llama", f"output_dir={run_copy}", "max_steps=1", "progress=false"
                ).says(str(run_copy), "'sft' run", "overwrite=true")
    assert changes(run_copy, before) == []


def test_output_dir_that_holds_a_finished_run_without_resume(fail, run_copy):
    before = snapshot(run_copy)
    assert sft(fail, run_copy).says(str(run_copy), "already holds a sft run", "resume=auto")
    assert changes(run_copy, before) == []


def test_output_dir_that_is_a_file(fail, tmp_path):
    file = tmp_path / "notes.txt"
    file.write_text("mine\n")
    assert sft(fail, file).says(str(file), "is a file")
    assert file.read_text() == "mine\n"


def test_output_dir_that_is_another_folder(fail, tmp_path):
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "a.jpg").write_bytes(b"\xff\xd8")
    before = snapshot(mine)
    assert sft(fail, mine).says(str(mine), "not an lmlab run folder")
    assert changes(mine, before) == []


def test_run_folder_with_a_damaged_config(fail, run_copy):
    cfg = run_copy / "config.yaml"
    cfg.write_text("stage: sft\nmodel: [unclosed\n")
    before = snapshot(run_copy)
    assert sft(fail, run_copy, "resume=auto").says(str(cfg))
    assert changes(run_copy, before) == []


def test_resume_auto_with_only_a_half_written_temp_checkpoint(run_copy, capsys):
    """Not an error: a kill during the first checkpoint's write leaves ``.tmp-step-N`` and no
    checkpoint; ``resume=auto`` starts from step 0, never loads the temp folder, and clears it."""
    ckpts = run_copy / "checkpoints"
    shutil.rmtree(ckpts / "step-1")
    (ckpts / "step-2").rename(ckpts / ".tmp-step-2")
    state = ckpts / ".tmp-step-2" / "state.pt"
    state.write_bytes(state.read_bytes()[:1000])
    assert main(["sft", *TINY, f"output_dir={run_copy}", "resume=auto", "save_every=1"]) == 0
    assert "resumed from" not in capsys.readouterr().out
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-1", "step-2"]
