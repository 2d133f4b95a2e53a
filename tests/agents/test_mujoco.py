"""A MuJoCo v5 task through `lmlab agent` (skipped without the `agent-mujoco` extra): SAC and TD3
on HalfCheetah-v5 for a few hundred steps, and the checkpoint (the MuJoCo env pickled
mid-episode) resuming exactly."""

from __future__ import annotations

import pytest
import torch

from lmlab.config import load_config
from lmlab.stages import agent as stage

from .test_stage import metrics, policy

pytest.importorskip("mujoco", reason='needs pip install "lmlab[agent-mujoco]"')

TINY = ["env=HalfCheetah-v5", "env_kwargs.max_episode_steps=50", "max_steps=160",
        "learning_starts=40", "batch_size=16", "hidden=16", "eval_every=80", "eval_episodes=1",
        "log_every=40", "save_every=40", "frames=false", "progress=false"]


def run_agent(out, algo: str, *extra, stop_after=None) -> dict:
    cfg = load_config(stage.Config, None, [f"algo={algo}", *TINY, f"output_dir={out}", *extra])
    return stage.run(cfg, stop_after=stop_after)


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_halfcheetah_trains_and_resumes_exactly(tmp_path, capsys, monkeypatch, algo):
    monkeypatch.chdir(tmp_path)  # MuJoCo writes its warnings to ./MUJOCO_LOG.TXT
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    summary = run_agent(whole, algo)
    assert summary["env"] == "HalfCheetah-v5" and summary["per_seed"][0]["env_steps"] == 160
    assert run_agent(cut, algo, stop_after=80)["stopped_at"] == 80
    run_agent(cut, algo, "resume=auto")
    assert "(env step 80 over all seeds)" in capsys.readouterr().out
    assert metrics(cut) == metrics(whole)
    a, b = policy(whole), policy(cut)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
