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
    # in-template, held-out template and out-of-range, before and after, each with n and an
    # interval; the in-template cell counts the same prompts as eval/accuracy
    splits = summary["task_eval_after"]
    assert {"test", "heldout", "range"} <= set(splits) and set(summary["task_eval_before"]) \
        == set(splits) and set(summary["task_gain"]) == set(splits)
    cell = splits["test"]["mean"]
    assert cell["accuracy"] == pytest.approx(summary["eval_after"]["eval/accuracy"])
    assert cell["n"] > 0 and len(cell["ci95"]) == 2
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


def _count_forwards(monkeypatch):
    import lmlab.rl.rollout as R

    calls, real = [], R.response_forward

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(R, "response_forward", counted)
    return calls


def test_one_step_per_rollout_skips_the_scoring_pass(tmp_path, monkeypatch):
    """4 sequences per rollout, batch_size 4, one epoch: the update's own forward gives the old
    log-probs and the KL, one policy forward per update fewer, and the same training."""
    from safetensors.torch import load_file

    toy_reward(monkeypatch)
    calls = _count_forwards(monkeypatch)
    runs = {}
    for name, extra in (("one", "kl_stop=0"), ("scored", "kl_stop=1e9")):  # kl_stop > 0 scores
        calls.clear()
        out = tmp_path / name
        assert main(args("grpo", out, "group_size=2", "beta=0.04", extra,
                         "merge_on_save=true")) == 0
        runs[name] = (len(calls), metrics(out), load_file(str(out / "final" /
                                                              "model.safetensors")))
    (n1, m1, w1), (n2, m2, w2) = runs["one"], runs["scored"]
    assert n2 - n1 == 3  # one policy scoring pass per update, 3 updates
    for a, b in zip(m1, m2):
        for key in ("train/loss", "train/kl", "train/reward/mean", "train/approx_kl"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    assert m1[0]["train/kl"] == pytest.approx(0.0, abs=1e-6) and m1[-1]["train/kl"] > 0
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-4, atol=1e-6)


def test_log_kl_false_skips_the_reference(tmp_path, monkeypatch):
    toy_reward(monkeypatch)
    calls = _count_forwards(monkeypatch)
    counts = {}
    for flag in ("true", "false"):
        calls.clear()
        out = tmp_path / flag
        assert main(args("grpo", out, "group_size=2", f"log_kl={flag}")) == 0
        counts[flag] = (len(calls), metrics(out))
    assert counts["true"][0] - counts["false"][0] == 3  # one reference pass per update
    assert all("train/kl" in r for r in counts["true"][1] if "train/loss" in r)
    assert not any("train/kl" in r for r in counts["false"][1])
