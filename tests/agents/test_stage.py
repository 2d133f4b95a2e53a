"""`lmlab agent` end to end on tiny budgets: a smoke run of every algorithm (run folder
contracts), exact resume equal to the uninterrupted run, identical runs from identical seeds,
several seeds with a confidence interval, the frame strip."""

from __future__ import annotations

import json

import pytest
import torch

from lmlab.config import load_config
from lmlab.stages import agent as stage

COMMON = ["max_steps=240", "eval_episodes=1", "eval_every=120", "log_every=60",
          "frames=false", "progress=false"]
TINY = {  # a few hundred steps, nets 16 wide
    "qlearning": [],
    "sarsa": ["env=FrozenLake-v1"],
    "dqn": ["learning_starts=40", "batch_size=16", "hidden=16", "train_freq=2",
            "target_update=50"],
    "vpg": ["n_steps=40", "n_envs=2", "n_epochs=3", "hidden=16"],
    "a2c": ["n_envs=2", "hidden=16"],
    "ppo": ["n_steps=32", "n_envs=2", "batch_size=32", "n_epochs=2", "hidden=16"],
    "ddpg": ["learning_starts=40", "batch_size=16", "hidden=16"],
    "td3": ["learning_starts=40", "batch_size=16", "hidden=16"],
    "sac": ["learning_starts=40", "batch_size=16", "hidden=16"],
}
TIMING = ("train/steps_per_s",)


def run_agent(out, algo: str, *extra, stop_after=None) -> dict:
    cfg = load_config(stage.Config, None, [f"algo={algo}", *COMMON, *TINY[algo],
                                          f"output_dir={out}", *extra])
    return stage.run(cfg, stop_after=stop_after)


def metrics(out) -> list[dict]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def policy(out, seed: int = 0) -> dict:
    d = out / "final" / f"seed-{seed}"
    if (d / "q.npy").exists():
        import numpy as np

        return {"q": torch.from_numpy(np.load(d / "q.npy"))}
    return {f"{k}.{n}": t for k, sd in torch.load(d / "policy.pt").items()
            for n, t in sd.items()}


@pytest.mark.parametrize("algo", list(TINY))
def test_smoke_writes_the_run_folder(tmp_path, algo):
    out = tmp_path / "run"
    summary = run_agent(out, algo)
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "final/agent.json"):
        assert (out / name).is_file(), name
    assert (out / "checkpoints").is_dir()
    rows = metrics(out)
    assert rows[-1]["env_step"] >= 240 and any("eval/return" in r for r in rows)
    assert any("train/return" in r for r in rows)  # episodes finished and were counted
    assert json.loads((out / "summary.json").read_text())["eval_return_mean"] == \
        summary["eval_return_mean"]
    assert summary["per_seed"][0]["env_steps"] >= 240
    assert policy(out)


@pytest.mark.parametrize("algo", list(TINY))
def test_resume_equals_uninterrupted(tmp_path, capsys, algo):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    run_agent(whole, algo, "save_every=60")
    stopped = run_agent(cut, algo, "save_every=60", stop_after=120)["stopped_at"]
    capsys.readouterr()
    run_agent(cut, algo, "save_every=60", "resume=auto")
    assert f"(env step {stopped:,} over all seeds)" in capsys.readouterr().out  # not restarted
    assert metrics(cut) == metrics(whole)
    a, b = policy(whole), policy(cut)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_across_seeds_and_ci(tmp_path, capsys):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    s1 = run_agent(whole, "dqn", "seeds=2")
    assert run_agent(cut, "dqn", "seeds=2", stop_after=300)["stopped_at"] == 360
    capsys.readouterr()
    s2 = run_agent(cut, "dqn", "seeds=2", "resume=auto")
    assert "(env step 360 over all seeds)" in capsys.readouterr().out
    assert metrics(cut) == metrics(whole)
    assert s1["seeds"] == s2["seeds"] == [0, 1]
    assert s1["eval_return_mean"] == s2["eval_return_mean"]
    assert s1["eval_return_ci95"] >= 0
    assert [r["seed"] for r in metrics(whole)][-1] == 1


def test_same_seed_same_run_other_seed_other_run(tmp_path):
    run_agent(tmp_path / "a", "ppo")
    run_agent(tmp_path / "b", "ppo")
    run_agent(tmp_path / "c", "ppo", "seed=1")
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")
    pa, pb, pc = policy(tmp_path / "a"), policy(tmp_path / "b"), policy(tmp_path / "c", 1)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert not all(torch.equal(pa[k], pc[k]) for k in pa)


def test_frame_strip_of_the_trained_agent(tmp_path):
    from PIL import Image

    out = tmp_path / "run"
    summary = run_agent(out, "ppo", "frames=true")
    img = Image.open(out / "frames.png")
    assert img.height == 120 and img.width > 4 * 120
    assert summary["frames"] == "frames.png" and summary["frames_steps"] >= 8


def test_dqn_keep_best_and_its_stabilisers_resume_exactly(tmp_path, capsys):
    """keep_best: final/seed-N/policy.pt is the policy of the best evaluation (the latest of
    ties), last.pt the last one, both scored again on held-out episodes; the kept policy and
    the lr schedule, Polyak target, MSE loss and one-coin exploration survive a resume."""
    extra = ("keep_best=true", "schedule=linear", "tau=0.5", "loss=mse", "n_envs=2",
             "epsilon_draw=step", "eval_every=60", "save_every=60")
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    s = run_agent(whole, "dqn", *extra)
    assert run_agent(cut, "dqn", *extra, stop_after=120)["stopped_at"] == 120
    run_agent(cut, "dqn", *extra, "resume=auto")
    assert metrics(cut) == metrics(whole)
    r = s["per_seed"][0]
    curve = [e["return"] for e in r["curve"]]
    latest_best = max(i for i, x in enumerate(curve) if x == max(curve))
    assert r["best"]["env_step"] == r["curve"][latest_best]["env_step"]
    assert r["best"]["select_return"] == max(curve)
    assert {"best_heldout_return_mean", "last_heldout_return_mean"} <= s.keys()
    for out in (whole, cut):
        assert (out / "final/seed-0/last.pt").is_file()
    a, b = policy(whole), policy(cut)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "keep_best, held-out episodes: kept policies" in capsys.readouterr().out
    rows = [x for x in metrics(whole) if "train/lr" in x]
    assert rows[-1]["train/lr"] < rows[0]["train/lr"]  # the linear schedule decays
