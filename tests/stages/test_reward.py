"""Reward model: head composition, save/load/score, the `lmlab reward` stage on the tiny model."""

import json

import pytest
import torch

from lmlab.cli import main


def _rows(n=12, **override):
    rows = [{"prompt": f"Say something about {i}.", "chosen": f"A kind word about {i}.",
             "rejected": f"Nothing {i}"} for i in range(n)]
    for i, patch in override.items():
        rows[int(i)].update(patch)
    return rows


def _write(tmp_path, rows, name="pairs.jsonl"):
    f = tmp_path / name
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(f)


def _reward(tmp_path, *extra, data=None, name="run"):
    out = tmp_path / name
    data = data or _write(tmp_path, _rows())
    args = ["reward", "model=tiny:llama", f"data={data}", f"output_dir={out}", "max_steps=3",
            "batch_size=2", "lr=1e-2", "warmup_steps=0", "progress=false", "eval_n=2", *extra]
    return main(args), out


# --- the head ---------------------------------------------------------------------------------


def test_last_token_index_right_and_left_padding():
    from lmlab.models.heads import last_token_index

    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 1, 1]])
    assert last_token_index(mask).tolist() == [2, 0, 3]


def test_score_ignores_padding_and_composes(tiny_model, tokenizer):
    from transformers import LlamaForCausalLM

    from lmlab.models.heads import RewardModel

    rm = RewardModel(tiny_model, tokenizer=tokenizer)
    assert type(rm.lm) is LlamaForCausalLM  # composition: the LM class is untouched
    names = {n for n, _ in rm.named_parameters()}
    assert {"head.weight", "head.bias"} <= names
    prompts = ["What is 2+2?", "Name a colour."]
    replies = ["4", "A much longer reply that pads the other row in the batch."]
    together = rm.score(prompts, replies)
    alone = [rm.score([p], [r])[0] for p, r in zip(prompts, replies)]
    assert together == pytest.approx(alone, abs=1e-5)


# --- the stage ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["full", "lora"])
def test_three_step_smoke_save_load_score(tmp_path, method):
    from lmlab.errors import ModelRefError
    from lmlab.models import load_model
    from lmlab.models.heads import load_reward_model

    rc, out = _reward(tmp_path, f"method={method}")
    assert rc == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert {"train/accuracy", "train/margin"} <= set(rows[0])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 and 0.0 <= summary["eval_accuracy"] <= 1.0
    assert summary["data"]["pairs"] == 10 and summary["data"]["eval_pairs"] == 2
    meta = json.loads((out / "final" / "lmlab.json").read_text())
    assert meta["head"] == "reward" and (meta.get("base") == "tiny:llama") == (method == "lora")

    rm = load_reward_model(str(out))  # the run folder works as a reference
    scores = rm.score(["Say something about 1.", "Say something about 1."],
                      ["A kind word about 1.", "Nothing 1"])
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)
    with pytest.raises(ModelRefError, match="reward model, not a causal LM policy"):
        load_model(str(out))


def test_reward_model_learns_a_style_preference(tmp_path):
    rc, out = _reward(tmp_path, "method=full", "max_steps=25", "batch_size=4", "lr=3e-3",
                      "eval_n=4")
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval_accuracy"] == 1.0 and summary["train_accuracy"] == 1.0
    assert summary["eval_after"]["eval/margin"] > summary["eval_before"]["eval/margin"]


def test_policy_folder_refused_as_reward_model(tmp_path, tiny_model, tokenizer):
    from lmlab.errors import ModelRefError
    from lmlab.models.heads import load_reward_model

    tiny_model.save_pretrained(tmp_path / "policy")
    with pytest.raises(ModelRefError, match="not a reward model"):
        load_reward_model(str(tmp_path / "policy"))


def test_resume_auto_continues_exactly(tmp_path):
    common = ("method=full", "schedule=constant", "save_every=1")
    rc, full = _reward(tmp_path, *common, "max_steps=4", name="full")
    assert rc == 0
    rc, part = _reward(tmp_path, *common, "max_steps=2", name="part")
    assert rc == 0
    rc, part = _reward(tmp_path, *common, "max_steps=4", "resume=auto", name="part")
    assert rc == 0
    a = json.loads((full / "metrics.jsonl").read_text().splitlines()[-1])
    b = json.loads((part / "metrics.jsonl").read_text().splitlines()[-1])
    assert b["step"] == 4 and a["train/loss"] == b["train/loss"]


# --- bad input ---------------------------------------------------------------------------------


def test_identical_pair_is_an_error_or_a_counted_skip(tmp_path, capsys):
    data = _write(tmp_path, _rows(**{"3": {"rejected": "A kind word about 3."}}))
    rc, _ = _reward(tmp_path, data=data)
    assert rc == 1 and "identical" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="skipped 1 of 12 rows"):
        rc, out = _reward(tmp_path, "on_error=skip", data=data, name="skip")
    assert rc == 0
    stats = json.loads((out / "summary.json").read_text())["data"]
    assert stats["skipped_invalid"] == 1 and stats["pairs"] == 9


def test_empty_reply_is_an_error(tmp_path, capsys):
    rc, _ = _reward(tmp_path, data=_write(tmp_path, _rows(**{"0": {"chosen": ""}})))
    err = capsys.readouterr().err
    assert rc == 1 and ":1:" in err and "chosen" in err


def test_long_prompt_is_skipped_and_counted_or_an_error(tmp_path, capsys):
    data = _write(tmp_path, _rows(**{"5": {"prompt": "word " * 400}}))
    rc, out = _reward(tmp_path, data=data)
    assert rc == 0
    assert json.loads((out / "summary.json").read_text())["data"]["skipped_long"] == 1
    rc, _ = _reward(tmp_path, "on_long=error", data=data, name="strict")
    assert rc == 1 and "longer than max_len" in capsys.readouterr().err
