"""sft recipes through the CLI on the tiny model: curriculum, mixtures, replay, continual."""

import json

import pytest
import torch
from safetensors.torch import load_file

from lmlab.cli import main

QUICK = ["model=tiny:llama", "max_steps=3", "batch_size=4", "lr=1e-2", "warmup_steps=0",
         "progress=false", "data_limit=12"]
EVAL = ["eval_n=1", "eval_splits=[test]", "eval_max_new_tokens=2", "eval_tasks=[add,sort]"]


def _sft(tmp_path, name, *extra):
    out = tmp_path / name
    rc = main(["sft", *QUICK, f"output_dir={out}", *extra])
    assert rc == 0
    return out


def _summary(out):
    return json.loads((out / "summary.json").read_text())


def _losses(out):
    return [json.loads(x)["train/loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]


RESUMABLE = {
    "params": ["curriculum=params"],
    "loss": ["curriculum=loss"],
    "mixture": ["mixture_weights=[3,1]", "replay_from=task:reverse", "replay_fraction=0.25"],
}


@pytest.mark.parametrize("recipe", ["params", pytest.param("loss", marks=pytest.mark.slow),
                                    "mixture"])
def test_recipe_smoke_and_exact_resume(tmp_path, monkeypatch, recipe):
    from lmlab.train import loop

    common = ("data=task:add,sort", *RESUMABLE[recipe], "method=full", "eval_n=0",
              "save_every=2", "max_steps=4")  # the pacing follows max_steps: the same in both
    full = _sft(tmp_path, "full", *common)
    train = loop.train
    with monkeypatch.context() as m:  # stopped after 2 of the 4 steps, as if interrupted
        m.setattr(loop, "train", lambda *a, **kw: train(*a, **kw, stop_after=2))
        part = _sft(tmp_path, "part", *common)
    assert len(_losses(part)) == 2
    part = _sft(tmp_path, "part", *common, "resume=auto")
    assert _losses(full) == _losses(part)
    if recipe == "mixture":
        return
    rec = _summary(full)["recipe"]["curriculum"]
    assert rec["scoring"] == recipe and rec["examples"] == 24
    scores = json.loads((full / "curriculum.json").read_text())["scores"]
    assert len(scores) == 24 and min(scores) < max(scores)


def test_loss_curriculum_mixture_and_replay_smoke(tmp_path):
    out = _sft(tmp_path, "loss", "data=task:add", "curriculum=loss", "curriculum_pacing=root",
               "eval_n=0")
    assert _summary(out)["recipe"]["curriculum"]["pacing"] == "root"
    assert len(json.loads((out / "curriculum.json").read_text())["scores"]) == 12
    out = _sft(tmp_path, "mix", "data=task:add,sort", "mixture_weights=[3,1]",
               "replay_from=task:reverse", "replay_fraction=0.25", "eval_n=0")
    rec = _summary(out)["recipe"]
    assert rec["mixture"]["probs"] == [0.75, 0.25]
    assert rec["mixture"]["sources"] == ["task:add", "task:sort"]
    assert rec["replay"] == {"from": "task:reverse", "fraction": 0.25, "examples": 12}
    out = _sft(tmp_path, "temp", "data=task:add,sort", "mixture_temperature=2", "eval_n=0")
    assert _summary(out)["recipe"]["mixture"]["probs"] == [0.5, 0.5]  # equal sizes


def test_continual_ewc_l2_and_lora_per_task(tmp_path):
    a = _sft(tmp_path, "a", "data=task:add", "method=full", "fisher_n=3", *EVAL)
    fisher = load_file(str(a / "fisher.safetensors"))
    assert fisher and all(torch.all(f >= 0) for f in fisher.values())
    assert any(float(f.sum()) > 0 for f in fisher.values())
    assert _summary(a)["fisher"]["rows"] == 3
    for method in ("ewc", "l2"):
        b = _sft(tmp_path, f"b_{method}", f"model={a}/final", "data=task:sort", "method=full",
                 f"continual={method}", "continual_lambda=10", f"continual_from={a}",
                 f"replay_from={a}", "replay_fraction=0.25", *EVAL)
        s = _summary(b)
        block = s["continual"]
        assert block["method"] == f"{method}+replay"
        assert block["tasks_a"] == ["add"] and block["tasks_b"] == ["sort"]
        assert set(block["after_a"]) == {"add", "sort"}
        assert s["recipe"]["replay"]["from"] == str(a)
        penalties = [json.loads(x).get("train/penalty")
                     for x in (b / "metrics.jsonl").read_text().splitlines()]
        assert penalties[0] == 0.0 and penalties[-1] > 0  # weights move away from phase A
    la = _sft(tmp_path, "lora_a", "data=task:add", "merge_on_save=false", *EVAL)
    lb = _sft(tmp_path, "lora_b", "data=task:sort", "merge_on_save=false", "continual=lora",
              f"continual_from={la}", *EVAL)
    block = _summary(lb)["continual"]
    assert block["method"] == "lora"
    assert block["routes"] == {"add": str(la / "final"), "sort": str(lb / "final")}
    assert block["after_b"]["add"] == block["after_a"]["add"]  # A's prompts go to A's adapter
