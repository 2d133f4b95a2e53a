"""What a killed checkpoint write, replace or prune leaves behind, and how the next save or
resume clears it (lmlab.runs: commit_folder, prune_checkpoints, tidy_checkpoints)."""

from lmlab.runs import (
    checkpoint_steps,
    commit_folder,
    prune_checkpoints,
    tidy_checkpoints,
)


def _ckpt(folder, name, text="x"):
    (folder / name).mkdir(parents=True)
    (folder / name / "state.pt").write_text(text)


def test_tidy_restores_a_replaced_checkpoint_and_clears_temp_folders(tmp_path):
    _ckpt(tmp_path, ".old-step-4", "old 4")  # killed between moving step-4 away and the new in
    _ckpt(tmp_path, ".tmp-step-4", "new 4, never committed")
    _ckpt(tmp_path, "step-2", "2")
    _ckpt(tmp_path, ".old-step-2", "stale")  # step-2 is there: the old copy is stale
    _ckpt(tmp_path, ".del-step-1", "half deleted")
    assert checkpoint_steps(tmp_path) == [2]  # what a resume sees before tidying
    tidy_checkpoints(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-2", "step-4"]
    assert (tmp_path / "step-4" / "state.pt").read_text() == "old 4"
    assert (tmp_path / "step-2" / "state.pt").read_text() == "2"
    tidy_checkpoints(tmp_path / "missing")  # no folder yet: nothing to do


def test_commit_replaces_and_prune_keeps_the_newest(tmp_path):
    for s in (1, 2, 3):
        _ckpt(tmp_path, f"step-{s}", str(s))
    _ckpt(tmp_path, ".tmp-step-3", "3 again")
    commit_folder(tmp_path / ".tmp-step-3", tmp_path / "step-3")
    assert (tmp_path / "step-3" / "state.pt").read_text() == "3 again"
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-2", "step-3"]
