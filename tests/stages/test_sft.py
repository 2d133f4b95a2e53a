"""SFT stage through the CLI, on the tiny model and an 8-row fixture."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from lmlab.cli import main

DATA = str(Path(__file__).resolve().parents[1] / "assets" / "sft" / "chat.jsonl")


def _sft(tmp_path, *extra, name="run"):
    out = tmp_path / name
    args = ["sft", "model=tiny:llama", f"data={DATA}", f"output_dir={out}", "max_steps=3",
            "batch_size=4", "lr=1e-2", "warmup_steps=0", "progress=false", "eval_n=0", *extra]
    return main(args), out


@pytest.mark.parametrize("method", ["full", "lora"])
def test_three_step_smoke(tmp_path, method):
    from transformers import AutoModelForCausalLM

    from lmlab.models import load_model

    rc, out = _sft(tmp_path, f"method={method}")
    assert rc == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["method"] == method
    assert yaml.safe_load((out / "config.yaml").read_text())["stage"] == "sft"
    # final/ is a plain transformers model (LoRA merged by default) whose weights moved
    trained = AutoModelForCausalLM.from_pretrained(out / "final")
    base = load_model("tiny:llama")
    diffs = [not torch.equal(p, q) for p, q in zip(base.parameters(), trained.parameters())]
    assert any(diffs)
    if method == "lora":
        assert summary["trainable_params"] < summary["total_params"] / 10


def test_lora_adapter_only_final_loads_by_reference(tmp_path):
    from lmlab.models import load_model, resolve

    rc, out = _sft(tmp_path, "method=lora", "merge_on_save=false")
    assert rc == 0 and (out / "final" / "adapter_config.json").exists()
    assert resolve(str(out)).kind == "adapter"
    model = load_model(str(out), merge_adapter=True)
    assert model.config.num_hidden_layers == 2


def test_resume_auto_continues_exactly(tmp_path):
    common = ("method=full", "schedule=constant", "save_every=1")
    rc, full = _sft(tmp_path, *common, "max_steps=4", name="full")
    assert rc == 0
    rc, part = _sft(tmp_path, *common, "max_steps=2", name="part")
    assert rc == 0
    rc, part = _sft(tmp_path, *common, "max_steps=4", "resume=auto", name="part")
    assert rc == 0
    a = json.loads((full / "metrics.jsonl").read_text().splitlines()[-1])
    b = json.loads((part / "metrics.jsonl").read_text().splitlines()[-1])
    assert b["step"] == 4 and a["train/loss"] == b["train/loss"]


def test_refuses_to_clobber_runs(tmp_path, capsys):
    rc, out = _sft(tmp_path)
    assert rc == 0
    rc, _ = _sft(tmp_path)  # same stage, no resume/overwrite
    assert rc == 1 and "already holds a sft run" in capsys.readouterr().err
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    cfg["stage"] = "dpo"
    (out / "config.yaml").write_text(yaml.safe_dump(cfg))
    rc, _ = _sft(tmp_path, "resume=auto")
    assert rc == 1 and "holds a 'dpo' run" in capsys.readouterr().err
    assert (out / "final").exists()  # nothing was deleted
    rc, _ = _sft(tmp_path, "overwrite=true")
    assert rc == 0


def test_bad_data_row_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}, '
                   '{"role": "assistant", "content": "yo"}]}\n{"messages": oops}\n')
    rc, out = _sft(tmp_path, f"data={bad}")
    err = capsys.readouterr().err
    assert rc == 1 and f"{bad}:2" in err
    assert not (out / "final").exists()


def test_final_is_written_into_a_cleared_temp_folder(tmp_path):
    """A save killed mid-write leaves ``.final.tmp`` behind; the next save starts from an empty
    one, so none of the dead save's files end up in ``final/``."""
    rc, out = _sft(tmp_path, "max_steps=1")
    assert rc == 0
    stale = out / ".final.tmp"
    stale.mkdir()
    # a file the new save does not write itself (transformers clears stale weight shards, not
    # this): left in place, final/ would look like an adapter folder
    (stale / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    rc, _ = _sft(tmp_path, "max_steps=2", "resume=auto")
    assert rc == 0
    assert not (out / "final" / "adapter_config.json").exists()
    assert not stale.exists()
