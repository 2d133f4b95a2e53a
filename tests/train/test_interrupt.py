"""Ctrl-C in the shared loop: the first one saves a checkpoint at the end of the step in flight
and stops (resume=auto then reaches the uninterrupted run's weights exactly); a second one quits
at once without a new checkpoint. The SIGINT is real: the objective sends it to this process."""

import os
import signal

import pytest
import torch

from lmlab.losses.objectives import LMObjective
from lmlab.models import load_model
from lmlab.runs import prepare_run
from lmlab.train.data import BatchStream
from lmlab.train.interrupt import StopRequest, TrainingInterrupted
from lmlab.train.loop import train

from .helpers import config, pad_collate, random_examples


class CtrlC:
    """The LM objective, pressing Ctrl-C ``times`` times during optimizer step ``at`` (1-based;
    one call per micro-batch, grad_accum=1)."""

    def __init__(self, at: int, times: int = 1):
        self.lm, self.at, self.times, self.calls = LMObjective(), at, times, 0

    def count(self, batch):
        return self.lm.count(batch)

    def __call__(self, model, batch):
        self.calls += 1
        out = self.lm(model, batch)
        if self.calls == self.at:
            for _ in range(self.times):
                os.kill(os.getpid(), signal.SIGINT)
        return out


def _run(folder, objective=None, **kw):
    cfg = config(folder, **{"max_steps": 7, "save_every": 100, "lr": 1e-3, **kw})
    run = prepare_run(cfg, "test")
    model = load_model("tiny:llama")
    stream = BatchStream(random_examples(), cfg.batch_size, pad_collate, seed=cfg.seed)
    res = train(model, objective or LMObjective(), stream, cfg, run)
    return model, res, run


def _steps(run):
    return sorted(p.name for p in run.checkpoints.iterdir()) if run.checkpoints.exists() else []


def test_first_ctrl_c_saves_the_current_step_and_resume_is_exact(tmp_path, capfd):
    handler = signal.getsignal(signal.SIGINT)
    full, _, run_a = _run(tmp_path / "a")
    with pytest.raises(TrainingInterrupted) as e:
        _run(tmp_path / "b", CtrlC(at=3))
    run_b = prepare_run(config(tmp_path / "b", max_steps=7, save_every=100, lr=1e-3,
                               resume="auto"), "test")
    # the step in flight (3) was finished, then saved, though save_every=100 saves none before 7
    assert _steps(run_b) == ["step-3"]
    assert "interrupted at step 3 of 7" in str(e.value) and "step-3" in str(e.value)
    assert "Ctrl-C again quits at once" in capfd.readouterr().err
    assert signal.getsignal(signal.SIGINT) is handler  # the previous handler is back

    resumed, res, run_b = _run(tmp_path / "b", resume="auto")
    assert res.resumed_from == 3 and res.step == 7
    for (n, a), b in zip(full.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), n
    assert [r["train/loss"] for r in run_b.read_metrics()] == \
        [r["train/loss"] for r in run_a.read_metrics()]


def test_second_ctrl_c_quits_at_once_without_a_checkpoint(tmp_path):
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as e:
        _run(tmp_path, CtrlC(at=3, times=2))
    assert not isinstance(e.value, TrainingInterrupted)
    assert "quit without saving" in str(e.value) and "no checkpoint" in str(e.value)
    assert _steps(prepare_run(config(tmp_path, resume="auto"), "test")) == []
    assert signal.getsignal(signal.SIGINT) is handler


def test_second_ctrl_c_names_the_last_checkpoint(tmp_path):
    with pytest.raises(KeyboardInterrupt) as e:
        _run(tmp_path, CtrlC(at=5, times=2), save_every=2)
    assert "the last checkpoint is" in str(e.value) and "step-4" in str(e.value)
    assert _steps(prepare_run(config(tmp_path, resume="auto"), "test")) == ["step-2", "step-4"]


def test_stop_request_outside_the_main_thread_leaves_signals_alone():
    import threading

    handler, seen = signal.getsignal(signal.SIGINT), []

    def body():
        with StopRequest() as stop:
            seen.append((signal.getsignal(signal.SIGINT), stop.requested))

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen == [(handler, False)]


def test_cli_says_what_was_saved_and_exits_130(tmp_path, capsys, monkeypatch):
    from lmlab import cli
    from lmlab.stages import load_stage

    def stopped(cfg):
        raise TrainingInterrupted("interrupted at step 3 of 7; saved x/step-3 (resume=auto ...)")

    def plain(cfg):
        raise KeyboardInterrupt

    sft = load_stage("sft")
    for fn, said in ((stopped, "lmlab: interrupted at step 3 of 7; saved x/step-3"),
                     (plain, "lmlab: interrupted\n")):
        monkeypatch.setattr(sft, "run", fn)
        assert cli.main(["sft", "model=tiny:llama", f"output_dir={tmp_path}/r"]) == 130
        err = capsys.readouterr().err
        assert said in err and "checkpoint is kept" not in err


@pytest.mark.parametrize("stage", ["grpo", "ppo"])
def test_online_stages_save_on_ctrl_c_and_resume_exactly(tmp_path, monkeypatch, capsys, stage):
    """grpo / ppo keep their own update loops; a Ctrl-C during update 2's rollout ends the run
    after update 2 with a checkpoint, and resume=auto ends with the uninterrupted weights."""
    from safetensors.torch import load_file

    import lmlab.rl.online as O
    from lmlab.cli import main
    from tests.stages.rl_helpers import args, metrics, toy_reward

    toy_reward(monkeypatch)
    extra = ("max_steps=3", "save_every=100", "group_size=2", "rewards=task")
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(args(stage, full, *extra)) == 0
    collect, calls = O.collect, []

    def ctrl_c_in_update_2(on, rows, **kw):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return collect(on, rows, **kw)

    monkeypatch.setattr(O, "collect", ctrl_c_in_update_2)
    assert main(args(stage, part, *extra)) == 130
    assert f"interrupted at step 2 of 3; saved {part}/checkpoints/step-2" in \
        capsys.readouterr().err
    assert sorted(p.name for p in (part / "checkpoints").iterdir()) == ["step-2"]
    monkeypatch.setattr(O, "collect", collect)
    assert main(args(stage, part, *extra, "resume=auto")) == 0
    assert [r["step"] for r in metrics(part)] == [1, 2, 3]
    wa = load_file(str(full / "final" / "model.safetensors"))
    wb = load_file(str(part / "final" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
