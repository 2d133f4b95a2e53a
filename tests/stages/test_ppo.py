"""`lmlab ppo` on the tiny model: smoke (LoRA and full), exact resume, the KL penalty and its
adaptive coefficient, a reward model as the reward."""

import json

import pytest
import torch

from lmlab.cli import main
from tests.stages.rl_helpers import args, check_resume, metrics, toy_reward

PPO_KEYS = {"train/reward/mean", "train/kl", "train/entropy", "train/clip_frac", "train/approx_kl",
            "train/value_loss", "train/response_len", "train/kl_coef", "train/policy_loss"}


@pytest.mark.parametrize("method", ["lora", "full"])
def test_three_update_smoke(tmp_path, monkeypatch, method):
    toy_reward(monkeypatch)
    out = tmp_path / "run"
    assert main(args("ppo", out, f"method={method}", "group_size=2", "rewards=task")) == 0
    rows = metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3] and PPO_KEYS <= set(rows[0])
    assert rows[0]["train/kl"] == pytest.approx(0.0, abs=1e-6)
    assert rows[0]["train/value_loss"] > 0 and rows[-1]["train/kl"] > 0
    assert (out / "final" / "value_head.safetensors").exists()
    first = out / "rollouts" / "update-00001.jsonl"
    assert len(first.read_text().splitlines()) == 4


def test_resume_equals_uninterrupted(tmp_path, monkeypatch):
    toy_reward(monkeypatch)
    check_resume(tmp_path, "ppo", "rewards=task", "adaptive_kl=true", "target_kl=0.001",
                 "kl_horizon=10")


def test_adaptive_kl_coefficient_grows_above_target(tmp_path, monkeypatch):
    toy_reward(monkeypatch)
    out = tmp_path / "run"
    assert main(args("ppo", out, "rewards=task", "adaptive_kl=true", "target_kl=1e-6",
                     "kl_horizon=4", "max_steps=4", "lr=2e-2")) == 0
    coefs = [r["train/kl_coef"] for r in metrics(out)]
    assert coefs[0] == 0.05 and coefs[-1] > coefs[1]  # KL above target -> coefficient up


def test_kl_penalty_enters_the_reward():
    from types import SimpleNamespace

    from lmlab.stages.ppo import Config, token_rewards

    ro = SimpleNamespace(mask=torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]),
                         old_logp=torch.tensor([[-1.0, -1.0, 0.0], [-1.0, -2.0, -1.0]]),
                         ref_logp=torch.tensor([[-2.0, -1.0, 0.0], [-1.0, -1.0, -1.0]]),
                         rewards=torch.tensor([3.0, 5.0]))
    r, kl = token_rewards(ro, 0.5, Config())
    # k1 = log pi - log pi_ref: row 0 (1, 0, pad), row 1 (0, -1, 0); score at the last real token
    assert r.tolist() == [[-0.5, 3.0, 0.0], [0.0, 0.5, 5.0]]
    assert kl.sum().item() == 0.0
    r, _ = token_rewards(ro, 0.0, Config(score_clip=4.0))
    assert r.tolist() == [[0.0, 3.0, 0.0], [0.0, 0.0, 4.0]]


def test_reward_model_reward(tmp_path):
    """rewards=model reads an `lmlab reward` folder and scores with it."""
    from lmlab.models import load_model, load_tokenizer
    from lmlab.models.heads import RewardModel, save_reward_model

    tok = load_tokenizer("tiny:llama")
    rm = RewardModel(load_model("tiny:llama"), tokenizer=tok)
    with torch.no_grad():
        rm.head.weight.normal_()
    save_reward_model(rm, tmp_path / "rm", stage="reward")
    out = tmp_path / "run"
    assert main(args("ppo", out, f"reward_model={tmp_path / 'rm'}", "max_steps=1")) == 0
    rec = json.loads((out / "rollouts" / "update-00001.jsonl").read_text().splitlines()[0])
    assert rec["reward/model"] != 0.0
    assert "eval/reward/model" in json.loads((out / "summary.json").read_text())["eval_after"]
