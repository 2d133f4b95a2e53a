"""`lmlab grpo` on the tiny model: smoke, exact resume, KL early stop, config errors."""

import json

import pytest
import torch

from lmlab.cli import main
from tests.stages.rl_helpers import args, check_resume, metrics, toy_reward


def test_three_update_smoke(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    from lmlab.models import load_model

    toy_reward(monkeypatch)
    out = tmp_path / "run"
    assert main(args("grpo", out, "group_size=4", "beta=0.04", "epochs=2")) == 0
    rows = metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert {"train/reward/mean", "train/kl", "train/entropy", "train/clip_frac",
            "train/approx_kl", "train/response_len", "train/loss"} <= set(rows[0])
    assert rows[0]["train/kl"] == pytest.approx(0.0, abs=1e-6)  # policy == reference at first
    assert rows[-1]["train/kl"] > 0 and rows[0]["train/grad_norm"] > 0
    recs = [json.loads(x) for x in (out / "rollouts" / "update-00002.jsonl").read_text()
            .splitlines()]
    assert len(recs) == 8 and {"prompt", "response", "reward", "advantage"} <= set(recs[0])
    group = [r["advantage"] for r in recs[:4]]
    assert sum(group) == pytest.approx(0.0, abs=1e-4)  # group-normalised
    summary = json.loads((out / "summary.json").read_text())
    assert summary["updates"] == 3 and summary["stopped_early"] is None
    assert "eval/accuracy" in summary["eval_after"] and (out / "samples.jsonl").exists()
    trained = AutoModelForCausalLM.from_pretrained(out / "final")
    base = load_model("tiny:llama")
    assert any(not torch.equal(p, q) for p, q in zip(base.parameters(), trained.parameters()))


def test_resume_equals_uninterrupted(tmp_path, monkeypatch):
    toy_reward(monkeypatch)
    check_resume(tmp_path, "grpo", "group_size=2", "advantage=rloo", "loss_level=token")


def test_kl_bound_stops_early(tmp_path, monkeypatch):
    toy_reward(monkeypatch)
    out = tmp_path / "run"
    assert main(args("grpo", out, "group_size=2", "max_steps=5", "lr=5e-2",
                     "kl_stop=1e-6")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_early"] and "kl_stop" in summary["stopped_early"]
    assert summary["updates"] < 5 and len(metrics(out)) == summary["updates"] + 1
    assert (out / "final").exists()


def test_config_errors(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(args("grpo", out, "group_size=1", "grad_accum=2", "rewards=task,model")) == 2
    err = capsys.readouterr().err
    assert "group_size" in err and "grad_accum" in err and "reward_model" in err
    assert not out.exists()
