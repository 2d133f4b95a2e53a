"""`lmlab dpo` on the tiny model: every loss, both references, resume, KL, bad input."""

import copy
import json

import pytest
import torch

from lmlab.cli import main


def _rows(n=12):
    return [{"prompt": f"Say something about {i}.", "chosen": f"A kind word about {i}.",
             "rejected": f"Nothing {i}"} for i in range(n)]


def _write(tmp_path, rows, name="pairs.jsonl"):
    f = tmp_path / name
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(f)


def _dpo(tmp_path, *extra, data=None, name="run"):
    out = tmp_path / name
    data = data or _write(tmp_path, _rows())
    args = ["dpo", "model=tiny:llama", f"data={data}", f"output_dir={out}", "max_steps=3",
            "batch_size=2", "lr=1e-3", "warmup_steps=0", "progress=false", "eval_n=2",
            "kl_n=2", "kl_max_new_tokens=4", *extra]
    return main(args), out


def _metrics(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def _pair_batch(tokenizer, rows):
    from lmlab.data import encode_preference
    from lmlab.losses.logprobs import collate_pairs

    return collate_pairs([encode_preference(tokenizer, r, 256) for r in rows],
                         tokenizer.pad_token_id)


# --- smoke: every loss ------------------------------------------------------------------------


@pytest.mark.parametrize("loss,method", [("dpo", "lora"), ("dpo", "full"), ("cdpo", "lora"),
                                         ("ipo", "lora"), ("simpo", "full"), ("orpo", "lora"),
                                         ("kto", "lora"), ("kto", "full")])
def test_three_step_smoke(tmp_path, loss, method):
    from transformers import AutoModelForCausalLM

    from lmlab.models import load_model

    rc, out = _dpo(tmp_path, f"loss={loss}", f"method={method}", "label_smoothing=0.1")
    assert rc == 0
    rows = _metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert {"train/rewards/accuracy", "train/loss"} <= set(rows[0])
    if loss != "kto":
        assert {"train/rewards/chosen", "train/rewards/margin"} <= set(rows[0])
    else:
        assert "train/kl" in rows[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["loss"] == loss and summary["steps"] == 3
    assert summary["kl"]["kl/prompts"] == 2 and summary["kl"]["kl/sequence"] >= 0
    assert "eval/rewards/accuracy" in summary["eval_after"]
    trained = AutoModelForCausalLM.from_pretrained(out / "final")
    base = load_model("tiny:llama")
    assert any(not torch.equal(p, q) for p, q in zip(base.parameters(), trained.parameters()))


def test_first_step_loss_is_log2_for_reference_losses(tmp_path):
    """Policy == reference at step 1, so the DPO loss is exactly log 2 for both references."""
    for method in ("lora", "full"):
        rc, out = _dpo(tmp_path, f"method={method}", name=method)
        assert rc == 0
        assert _metrics(out)[0]["train/loss"] == pytest.approx(0.6931471805599453, abs=1e-6)


# --- references --------------------------------------------------------------------------------


def _perturb_lora(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def test_lora_reference_equals_frozen_copy(tiny_model, tokenizer):
    from lmlab.losses.logprobs import adapter_reference, model_reference, sequence_logps
    from lmlab.losses.preference import PAIR_LOSSES, PrefParams
    from lmlab.models.adapters import add_lora
    from lmlab.stages.dpo import PairObjective

    frozen = copy.deepcopy(tiny_model).eval()
    policy = add_lora(tiny_model, r=4, alpha=8, dropout=0.0, targets=[])
    _perturb_lora(policy)  # the adapter now changes the outputs
    batch = _pair_batch(tokenizer, _rows(4))
    via_adapter = adapter_reference(policy, batch)
    via_copy = model_reference(frozen)(policy, batch)
    assert torch.allclose(via_adapter, via_copy, atol=1e-5)
    assert not torch.allclose(sequence_logps(policy, batch)[0], via_copy, atol=1e-2)
    params = PrefParams(beta=0.1)
    a, ma = PairObjective(PAIR_LOSSES["dpo"], params, adapter_reference)(policy, batch)
    b, mb = PairObjective(PAIR_LOSSES["dpo"], params, model_reference(frozen))(policy, batch)
    assert a.item() == pytest.approx(b.item(), abs=1e-5)
    assert ma["rewards/margin"] == pytest.approx(mb["rewards/margin"], abs=1e-5)


def test_cached_reference_equals_frozen_copy(tiny_model, tokenizer):
    from lmlab.data import encode_preference
    from lmlab.losses.logprobs import collate_pairs, model_reference
    from lmlab.stages.dpo import Config, build_objective

    examples = [encode_preference(tokenizer, r, 256) for r in _rows(5)]
    frozen = copy.deepcopy(tiny_model).eval()
    cfg = Config(model="tiny:llama", method="full", ref_batch_size=2)
    objective, _ = build_objective(cfg, tiny_model, examples, [], tokenizer.pad_token_id)
    batch = collate_pairs(examples, tokenizer.pad_token_id)
    assert torch.allclose(batch["ref_logps"], model_reference(frozen)(None, batch).float(),
                          atol=1e-5)
    assert torch.allclose(objective.reference(tiny_model, batch), batch["ref_logps"])


def test_kl_is_zero_at_the_reference_and_positive_after(tiny_model, tokenizer):
    from lmlab.losses.logprobs import disabled_adapter_forward
    from lmlab.models.adapters import add_lora
    from lmlab.stages.dpo import reference_kl

    policy = add_lora(tiny_model, r=4, alpha=8, dropout=0.0, targets=[])
    prompts = ["What is 2+2?", "Name a colour."]
    kl0 = reference_kl(policy, disabled_adapter_forward(policy), tokenizer, prompts, 6)
    assert abs(kl0["kl/sequence"]) < 1e-6
    _perturb_lora(policy)
    kl1 = reference_kl(policy, disabled_adapter_forward(policy), tokenizer, prompts, 6)
    assert kl1["kl/sequence"] > 1e-3 and kl1["kl/token"] > 0


def test_kl_twins_never_share_a_prompt(tokenizer):
    from lmlab.data import encode_preference
    from lmlab.stages.dpo import add_kl_twins, pairs_to_kto

    pairs = [encode_preference(tokenizer, r, 256) for r in _rows(3)]
    rows = add_kl_twins(pairs_to_kto(pairs), 256)
    assert [r["label"] for r in rows] == [True, True, True, False, False, False]
    for i, r in enumerate(rows):
        twin = tokenizer.decode(r["kl_input_ids"])
        own = tokenizer.decode(r["input_ids"])
        assert f"about {i % 3}." in twin.split("<|im_start|>assistant")[0]  # its own prompt
        assert twin != own
    # row 0's twin carries row 5's completion (rotation by one)
    other = [x for x in rows[5]["labels"] if x != -100]
    assert [x for x in rows[0]["kl_labels"] if x != -100] == other


# --- learning, resume ---------------------------------------------------------------------------


def test_dpo_learns_the_preference(tmp_path):
    rc, out = _dpo(tmp_path, "method=full", "max_steps=12", "batch_size=4", "lr=3e-3",
                   "eval_n=4", "beta=0.5")
    assert rc == 0
    rows = _metrics(out)
    assert rows[-1]["train/rewards/accuracy"] == 1.0
    assert rows[-1]["train/rewards/margin"] > rows[0]["train/rewards/margin"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval_after"]["eval/rewards/accuracy"] == 1.0
    assert summary["eval_after"]["eval/loss"] < 0.6931


@pytest.mark.parametrize("method", ["full", "lora"])
def test_resume_auto_continues_exactly(tmp_path, method):
    common = (f"method={method}", "schedule=constant", "save_every=1", "kl_n=0")
    rc, full = _dpo(tmp_path, *common, "max_steps=4", name="full")
    assert rc == 0
    rc, part = _dpo(tmp_path, *common, "max_steps=2", name="part")
    assert rc == 0
    rc, part = _dpo(tmp_path, *common, "max_steps=4", "resume=auto", name="part")
    assert rc == 0
    a, b = _metrics(full)[-1], _metrics(part)[-1]
    assert b["step"] == 4 and a["train/loss"] == b["train/loss"]


# --- bad input ----------------------------------------------------------------------------------


def test_reward_model_refused_as_policy(tmp_path, capsys):
    rc, rm = main(["reward", "model=tiny:llama", f"data={_write(tmp_path, _rows())}",
                   f"output_dir={tmp_path / 'rm'}", "max_steps=1", "batch_size=2",
                   "progress=false", "eval_n=0", "method=full"]), tmp_path / "rm"
    assert rc == 0
    rc, _ = _dpo(tmp_path, f"model={rm}")
    assert rc == 1 and "is a reward model, not a causal LM policy" in capsys.readouterr().err


def test_kto_rows_and_kind_checks(tmp_path, capsys):
    rows = [{"prompt": f"Say something about {i}.", "completion": f"Reply {i}.",
             "label": i % 2 == 0} for i in range(8)]
    data = _write(tmp_path, rows, "kto.jsonl")
    rc, out = _dpo(tmp_path, "loss=kto", "data_kind=kto", data=data)
    assert rc == 0
    stats = json.loads((out / "summary.json").read_text())["data"]
    assert stats["completions"] == 8 and stats["desirable"] == 4
    rc, _ = _dpo(tmp_path, "loss=dpo", "data_kind=kto", data=data, name="bad")
    assert rc == 2 and "needs pairs" in capsys.readouterr().err


def test_identical_and_long_rows_are_counted(tmp_path, capsys):
    rows = _rows()
    rows[2]["rejected"] = rows[2]["chosen"]
    rows[4]["prompt"] = "word " * 400
    data = _write(tmp_path, rows)
    rc, _ = _dpo(tmp_path, data=data)
    assert rc == 1 and "identical" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="skipped 1 of 12"):
        rc, out = _dpo(tmp_path, "on_error=skip", data=data, name="skip")
    assert rc == 0
    stats = json.loads((out / "summary.json").read_text())["data"]
    assert (stats["skipped_invalid"], stats["skipped_long"], stats["pairs"]) == (1, 1, 8)


def test_full_kl_reference_under_auto_is_the_policys_start(tmp_path, monkeypatch):
    """dtype=auto as bf16 autocast (fp32 master weights): the KL reference reloaded after full
    DPO is held in fp32 like the policy, so with a learning rate too small to move a weight the
    KL to it is exactly zero (a bf16 reference would be another model)."""
    import lmlab.models

    monkeypatch.setenv("LMLAB_AUTO_DTYPE", "bf16")
    loaded, real = [], lmlab.models.load_model

    def recording(*a, **kw):
        loaded.append(kw.get("dtype"))
        return real(*a, **kw)

    monkeypatch.setattr(lmlab.models, "load_model", recording)
    rc, out = _dpo(tmp_path, "method=full", "dtype=auto", "lr=1e-30", "eval_n=0",
                   "task_eval_n=0")
    assert rc == 0
    resolved = (out / "config.yaml").read_text()
    assert "bf16 autocast" in resolved
    assert loaded and set(loaded) == {torch.float32}  # the policy and the KL reference
    assert len(loaded) >= 2
    kl = json.loads((out / "summary.json").read_text())["kl"]
    assert kl["kl/prompts"] == 2 and kl["kl/sequence"] == 0.0
