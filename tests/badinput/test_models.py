"""Bad model references: broken or half-written model folders, run folders, files, typos and hub
ids offline. Each fails with a message naming the folder (and the file or field), before the
stage writes its run folder, and leaves the user's folder as it was."""

import json
import shutil

import pytest

from lmlab.cli import main

from .conftest import changes, snapshot


@pytest.fixture(scope="module")
def good(tmp_path_factory, tokenizer):
    """A complete tiny model folder (config.json, model.safetensors, tokenizer), made once."""
    from lmlab.models import load_model

    folder = tmp_path_factory.mktemp("models") / "good"
    load_model("tiny:llama").save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def reward_run(tmp_path_factory):
    """A finished `lmlab reward` run on tiny:llama (one step)."""
    root = tmp_path_factory.mktemp("reward")
    data = root / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Say {i}.", "chosen": f"Kind {i}.",
                                        "rejected": f"No {i}"}) + "\n" for i in range(6)))
    out = root / "rm"
    assert main(["reward", "model=tiny:llama", f"data={data}", f"output_dir={out}",
                 "max_steps=1", "batch_size=2", "progress=false", "eval_n=0",
                 "method=full"]) == 0
    return out


@pytest.fixture()
def copy(good, tmp_path):
    """``copy(name)``: a fresh copy of the good folder to break."""
    return lambda name="model": shutil.copytree(good, tmp_path / name)


def generate(fail, tmp_path, model, *extra):
    """``lmlab generate`` on ``model``; it must fail before writing its run folder."""
    out = tmp_path / "out"
    f = fail("generate", f"model={model}", "prompt=hi", "max_new_tokens=2", f"output_dir={out}",
             *extra)
    assert not out.exists(), "the run folder was written before the model was checked"
    return f


def edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    for k, v in changes.items():
        if v is None:
            config.pop(k, None)
        else:
            config[k] = v
    (folder / "config.json").write_text(json.dumps(config))


# --- the weights --------------------------------------------------------------------------------


def test_truncated_safetensors(fail, copy, tmp_path):
    d = copy()
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:w.stat().st_size // 2])
    before = snapshot(d)
    assert generate(fail, tmp_path, d).says(str(w), "truncated")
    assert changes(d, before) == []


def test_safetensors_cut_inside_its_header(fail, copy, tmp_path):
    d = copy()
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:5])
    assert generate(fail, tmp_path, d).says(str(w), "truncated")


def test_safetensors_header_not_json(fail, copy, tmp_path):
    d = copy()
    w = d / "model.safetensors"
    w.write_bytes((20).to_bytes(8, "little") + b"{this is not json!!}" + b"\0" * 64)
    assert generate(fail, tmp_path, d).says(str(w), "header")


def test_config_without_weights(fail, copy, tmp_path):
    d = copy()
    (d / "model.safetensors").unlink()
    assert generate(fail, tmp_path, d).says(str(d), "no weights", "model.safetensors")


def test_shard_index_naming_a_missing_shard(fail, copy, tmp_path):
    d = copy()
    (d / "model.safetensors").rename(d / "model-00001-of-00002.safetensors")
    index = {"metadata": {}, "weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    assert generate(fail, tmp_path, d).says("model.safetensors.index.json",
                                             "model-00002-of-00002.safetensors")


# --- config.json --------------------------------------------------------------------------------


def test_config_naming_an_unknown_architecture(fail, copy, tmp_path):
    d = copy()
    edit_config(d, model_type="flamingollama", architectures=["FlamingoLlamaForCausalLM"])
    assert generate(fail, tmp_path, d).says(str(d / "config.json"), "model_type", "flamingollama")


def test_config_without_model_type(fail, copy, tmp_path):
    d = copy()
    edit_config(d, model_type=None)
    assert generate(fail, tmp_path, d).says(str(d / "config.json"), "model_type", "missing")


def test_config_that_is_not_json(fail, copy, tmp_path):
    d = copy()
    (d / "config.json").write_text('{"model_type": "llama",\n  hidden_size: 64}\n')
    assert generate(fail, tmp_path, d).says(f"{d / 'config.json'}:2", "not valid JSON")


def test_config_with_bytes_that_are_not_utf8(fail, copy, tmp_path):
    d = copy()
    (d / "config.json").write_bytes(b'{"model_type": "llama",\n "name": "caf\xe9"}\n')
    assert generate(fail, tmp_path, d).says(f"{d / 'config.json'}:2:", "not UTF-8", "byte 0xe9")


def test_config_that_is_a_list(fail, copy, tmp_path):
    d = copy()
    (d / "config.json").write_text("[1, 2]")
    assert generate(fail, tmp_path, d).says(str(d / "config.json"), "JSON object")


def test_a_model_with_no_causal_lm_form(fail, copy, tmp_path):
    d = copy()
    edit_config(d, model_type="t5")
    assert generate(fail, tmp_path, d).says(str(d / "config.json"), "'t5'", "causal")


def test_lmlab_json_that_is_not_json(fail, copy, tmp_path):
    d = copy()
    (d / "lmlab.json").write_text("{oops")
    assert generate(fail, tmp_path, d).says(str(d / "lmlab.json"), "not valid JSON")


# --- the folder ---------------------------------------------------------------------------------


def test_empty_folder(fail, tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    assert generate(fail, tmp_path, d).says(str(d), "empty folder")


def test_folder_of_other_files(fail, tmp_path):
    d = tmp_path / "notes"
    d.mkdir()
    (d / "readme.txt").write_text("hello")
    assert generate(fail, tmp_path, d).says(str(d), "config.json", "readme.txt")


def test_weights_without_a_tokenizer(fail, copy, tmp_path):
    d = copy()
    for f in d.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            f.unlink()
    before = snapshot(d)
    assert fail("generate", f"model={d}", "prompt=hi", "max_new_tokens=2",
                f"output_dir={tmp_path / 'out'}").says(str(d), "no tokenizer", "tokenizer.json")
    assert changes(d, before) == []


def test_adapter_without_its_base(fail, tmp_path):
    d = tmp_path / "adapter"
    d.mkdir()
    (d / "adapter_config.json").write_text("{}")
    assert generate(fail, tmp_path, d).says(str(d), "LoRA adapter", "lmlab.json")


def test_run_folder_with_no_final(fail, tmp_path):
    run = tmp_path / "runs" / "sft-x"
    (run / "checkpoints" / "step-20").mkdir(parents=True)
    (run / "checkpoints" / "step-100").mkdir()
    (run / "config.yaml").write_text("stage: sft\nmodel: tiny:llama\n")
    before = snapshot(run)
    assert generate(fail, tmp_path, run).says(str(run), "no final/", "resume=auto",
                                               "lmlab sft --config", "step-100")
    assert changes(run, before) == []


def test_reward_run_passed_to_generate(fail, reward_run, tmp_path):
    before = snapshot(reward_run)
    assert fail("generate", f"model={reward_run}", "prompt=hi", "max_new_tokens=2",
                f"output_dir={tmp_path / 'out'}").says(str(reward_run / "final"), "reward model",
                                                        "not a causal LM")
    assert changes(reward_run, before) == []


def test_reward_run_passed_to_dpo(fail, reward_run, tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n")
    assert fail("dpo", f"model={reward_run}", f"data={data}", "max_steps=1",
                f"output_dir={tmp_path / 'dpo'}").says(str(reward_run / "final"), "reward model",
                                                        "reward_model=")


def test_evaluate_on_a_folder_that_cannot_load(fail, copy, tmp_path):
    d = copy()
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    out = tmp_path / "ev"
    assert fail("evaluate", f"model={d}", f"output_dir={out}").says(str(w), "truncated")
    assert not out.exists()


# --- files, names and the hub -------------------------------------------------------------------


def test_config_json_given_for_its_folder(fail, good, tmp_path):
    assert generate(fail, tmp_path, good / "config.json").says(str(good / "config.json"),
                                                                f"model={good}")


def test_a_file_that_is_no_model(fail, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("hi")
    assert generate(fail, tmp_path, f).says(str(f), "is a file")


def test_truncated_gguf(fail, tmp_path):
    f = tmp_path / "model.gguf"
    f.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + b"\x05")
    assert generate(fail, tmp_path, f).says(str(f), "GGUF", "incomplete or damaged")


def test_unknown_tiny_preset(fail, tmp_path):
    assert generate(fail, tmp_path, "tiny:lama").says("tiny preset 'lama'", "did you mean 'llama'")


def test_alias_typo(fail, tmp_path):
    assert generate(fail, tmp_path, "smollm2-135m-instuct").says(
        "unknown model 'smollm2-135m-instuct'", "did you mean 'smollm2-135m-instruct'")


def test_hub_id_while_offline(fail, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    assert generate(fail, tmp_path, "someone/no-such-model-here").says(
        "'someone/no-such-model-here'", "HF_HUB_OFFLINE=1", "offline")
