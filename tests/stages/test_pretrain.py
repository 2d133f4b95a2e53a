"""`lmlab pretrain` on tiny models: every objective and position scheme runs, resumes exactly,
writes final/ that `lmlab generate` and `lmlab sft` take; continued pretraining measures
before/after."""

import json

import pytest
import yaml

from lmlab.cli import main

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\n") * 12
OBJECTIVES = ["clm", "mlm", "span", "prefix", "electra"]


@pytest.fixture()
def corpus(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(TEXT)
    b.write_text(TEXT.upper())
    return f"{a},{b}"


def _pretrain(tmp_path, data, *extra, name="run"):
    out = tmp_path / name
    args = ["pretrain", "preset=tiny", f"data={data}", f"output_dir={out}", "max_steps=3",
            "batch_size=4", "lr=1e-2", "warmup_steps=0", "progress=false", "log_every=1",
            "eval_every=2", "eval_chars=300", "sample_tokens=6", "save_every=0", *extra]
    return main(args), out


def _metrics(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_three_step_smoke_and_exact_resume(tmp_path, corpus, objective):
    common = (f"objective={objective}", "schedule=constant", "save_every=1")
    rc, full = _pretrain(tmp_path, corpus, *common, "max_steps=4", name="full")
    assert rc == 0
    rows = _metrics(full)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert "eval/loss" in rows[1] and rows[0]["train/loss"] > 0
    summary = json.loads((full / "summary.json").read_text())
    assert summary["objective"] == objective and summary["steps"] == 4
    assert summary["val"]["loss"] > 0
    assert ("bits_per_byte" in summary["val"]) == (objective in ("clm", "prefix"))
    meta = json.loads((full / "final" / "lmlab.json").read_text())
    assert meta["stage"] == "pretrain" and meta["objective"] == objective
    if objective in ("mlm", "electra"):  # an encoder: refused as a causal LM, by name
        from lmlab.errors import ModelRefError
        from lmlab.models import load_model

        with pytest.raises(ModelRefError, match="encoder|discriminator"):
            load_model(str(full))
    rc, part = _pretrain(tmp_path, corpus, *common, "max_steps=2", name="part")
    assert rc == 0
    rc, part = _pretrain(tmp_path, corpus, *common, "max_steps=4", "resume=auto", name="part")
    assert rc == 0
    a, b = _metrics(full), _metrics(part)
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    assert a[-1]["train/loss"] == b[-1]["train/loss"]
    assert a[-1]["train/grad_norm"] == b[-1]["train/grad_norm"]
    if objective in ("clm", "prefix"):  # samples after resume equal, one row per step/prompt
        sa = (full / "samples.jsonl").read_text()
        assert sa == (part / "samples.jsonl").read_text() and len(sa.splitlines()) == 2


@pytest.mark.parametrize("position", ["learned", "none", "alibi"])
def test_position_schemes_train_and_reload(tmp_path, corpus, position):
    from transformers import AutoModelForCausalLM

    rc, out = _pretrain(tmp_path, corpus, f"position={position}", "isolate_docs=true")
    assert rc == 0
    model = AutoModelForCausalLM.from_pretrained(out / "final")
    want = {"learned": "GPT2LMHeadModel", "none": "SmolLM3ForCausalLM",
            "alibi": "FalconForCausalLM"}[position]
    assert type(model).__name__ == want
    if position == "none":
        assert model.config.no_rope_layers == [0, 0]


def test_pretrained_model_loads_in_generate_and_sft(tmp_path, corpus):
    rc, out = _pretrain(tmp_path, corpus, "max_steps=2", "preset=tiny", "context=64")
    assert rc == 0
    gen = tmp_path / "gen"
    rc = main(["generate", f"model={out}", "prompt=First", "chat=false", "max_new_tokens=5",
               f"output_dir={gen}", "strategy=greedy", "temperature=0"])
    assert rc == 0
    sample = json.loads((gen / "samples.jsonl").read_text().splitlines()[0])
    assert isinstance(sample["completion"], str)
    chat = tmp_path / "chat.jsonl"
    chat.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"Speak {i}"},
        {"role": "assistant", "content": "I speak."}]}) + "\n" for i in range(6)))
    sft = tmp_path / "sft"
    rc = main(["sft", f"model={out}", f"data={chat}", "method=full", "max_steps=2",
               "batch_size=2", "max_len=64", "eval_n=0", "progress=false",
               f"output_dir={sft}", "warmup_steps=0"])
    assert rc == 0 and (sft / "final" / "config.json").is_file()


def test_continued_pretraining_measures_domain_and_general(tmp_path, corpus):
    general = tmp_path / "general.txt"
    general.write_text("The quick brown fox jumps over the lazy dog. " * 40)
    rc, out = _pretrain(tmp_path, corpus, "model=tiny:llama", f"general_data={general}",
                        "max_steps=6", "max_len=32", "lr=3e-3", "eval_every=0",
                        "sample_tokens=0")
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert set(s["before"]) == set(s["after"]) == {"val", "general"}
    assert s["after"]["val"]["loss"] < s["before"]["val"]["loss"]  # it learned the domain
    assert s["after"]["val"]["bits_per_byte"] < s["before"]["val"]["bits_per_byte"]
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["model"] == "tiny:llama"


def test_bf16_autocast_on_cpu_keeps_fp32_weights(tmp_path, corpus):
    from safetensors import safe_open

    rc, out = _pretrain(tmp_path, corpus, "dtype=bf16", "max_steps=2", "sample_tokens=0")
    assert rc == 0
    with safe_open(str(out / "final" / "model.safetensors"), "pt") as f:
        t = f.get_tensor(next(iter(f.keys())))
    assert str(t.dtype) == "torch.float32"
    assert json.loads((out / "summary.json").read_text())["val"]["loss"] > 0


def test_shakespeare_corpus_default_run_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = main(["pretrain", "preset=tiny", "data_chars=20000", "max_steps=2", "batch_size=2",
               "progress=false", "eval_every=0", "eval_chars=500", "sample_tokens=4"])
    assert rc == 0
    out = tmp_path / "runs" / "pretrain-tiny-rope-clm"
    s = json.loads((out / "summary.json").read_text())
    assert s["vocab"] > 40 and s["val"]["bits_per_byte"] > 0


@pytest.mark.slow
def test_compile_trains_and_evaluates_eagerly(tmp_path, corpus):
    """compile=true: the training step compiles; eval and samples run the eager forward."""
    rc, out = _pretrain(tmp_path, corpus, "compile=true", "max_steps=3", "eval_every=2")
    assert rc == 0
    assert len((out / "samples.jsonl").read_text().splitlines()) == 2
