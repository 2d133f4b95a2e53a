"""`lmlab sft method=qlora`: LoRA on a frozen bitsandbytes NF4 / int8 base (CPU and CUDA)."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from lmlab.cli import main

DATA = str(Path(__file__).resolve().parents[1] / "assets" / "sft" / "chat.jsonl")
needs_bnb = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                               reason="QLoRA needs bitsandbytes (pip install 'lmlab[quant]')")


def _sft(tmp_path, *extra, name="run"):
    out = tmp_path / name
    args = ["sft", "model=tiny:llama", f"data={DATA}", f"output_dir={out}", "max_steps=3",
            "batch_size=4", "lr=1e-2", "warmup_steps=0", "progress=false", "eval_n=0",
            "method=qlora", *extra]
    return main(args), out


@needs_bnb
@pytest.mark.parametrize("bits", [4, 8])
def test_qlora_three_steps_on_cpu_saves_an_adapter(tmp_path, bits):
    from lmlab.models import load_model, resolve

    rc, out = _sft(tmp_path, f"qlora_bits={bits}", "device=cpu")
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["method"] == "qlora" and s["steps"] == 3
    assert s["trainable_params"] < s["total_params"] / 10
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train/loss"] < rows[0]["train/loss"]
    assert resolve(str(out)).kind == "adapter"  # base (fp32 reference) + adapter
    trained = load_model(str(out), merge_adapter=True)
    base = load_model("tiny:llama")
    assert any(not torch.equal(p, q) for p, q in zip(base.parameters(), trained.parameters()))


@needs_bnb
def test_qlora_resume_continues_exactly(tmp_path):
    common = ("schedule=constant", "save_every=1", "device=cpu", "lora_dropout=0")
    rc, full = _sft(tmp_path, *common, "max_steps=4", name="full")
    assert rc == 0
    rc, part = _sft(tmp_path, *common, "max_steps=2", name="part")
    rc, part = _sft(tmp_path, *common, "max_steps=4", "resume=auto", name="part")
    assert rc == 0
    a = json.loads((full / "metrics.jsonl").read_text().splitlines()[-1])
    b = json.loads((part / "metrics.jsonl").read_text().splitlines()[-1])
    assert b["step"] == 4 and a["train/loss"] == b["train/loss"]


def test_unsupported_device_is_a_clear_error():
    from lmlab.errors import UserError
    from lmlab.quant.qlora import load_qlora_base

    with pytest.raises(UserError, match="needs a CUDA GPU or a CPU|not installed"):
        load_qlora_base("tiny:llama", 4, torch.device("mps"))


@pytest.mark.gpu
@needs_bnb
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_qlora_on_cuda(tmp_path):
    rc, out = _sft(tmp_path, "device=cuda")
    assert rc == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == 3
