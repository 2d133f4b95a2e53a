"""`lmlab qat` through the CLI on the tiny model: smoke, exact resume, comparison, errors."""

import json
from pathlib import Path

import pytest
import torch

from lmlab.cli import main

pytest.importorskip("torchao")
ASSETS = Path(__file__).resolve().parents[1] / "assets"
DATA = str(ASSETS / "sft" / "chat.jsonl")
TEXT = str(ASSETS / "quant" / "heldout.txt")


def _qat(tmp_path, *extra, name="run"):
    out = tmp_path / name
    args = ["qat", "model=tiny:llama", f"data={DATA}", f"output_dir={out}", "max_steps=3",
            "batch_size=4", "lr=1e-2", "warmup_steps=0", "progress=false", "eval_n=0",
            "decode_tokens=0", f"ppl_text={TEXT}", "ppl_windows=2", *extra]
    return main(args), out


def test_three_step_smoke_final_reloads_and_differs_from_ptq(tmp_path):
    from lmlab.models import load_model
    from lmlab.quant.ptq import Recipe, quantize_model

    rc, out = _qat(tmp_path, "scheme=int4-weight")
    assert rc == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    s = json.loads((out / "summary.json").read_text())
    assert s["steps"] == 3 and s["method"] == "int4-weight"
    for part in ("qat", "ptq", "fp32"):
        assert "perplexity" in s[part]
    assert "recovered_perplexity" in s
    model = load_model(str(out))  # the converted int4 model reloads
    ptq = quantize_model(load_model("tiny:llama"), Recipe("int4-weight"))
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert not torch.equal(model(ids).logits, ptq(ids).logits)  # training moved weights
    assert type(model.model.layers[0].mlp.up_proj.weight).__name__ != "Parameter"


def test_resume_auto_continues_exactly(tmp_path):
    common = ("schedule=constant", "save_every=1", "compare=false")
    rc, full = _qat(tmp_path, *common, "max_steps=4", name="full")
    assert rc == 0
    rc, part = _qat(tmp_path, *common, "max_steps=2", name="part")
    assert rc == 0
    rc, part = _qat(tmp_path, *common, "max_steps=4", "resume=auto", name="part")
    assert rc == 0
    a = json.loads((full / "metrics.jsonl").read_text().splitlines()[-1])
    b = json.loads((part / "metrics.jsonl").read_text().splitlines()[-1])
    assert b["step"] == 4 and a["train/loss"] == b["train/loss"]


@pytest.mark.parametrize("args,message", [(["scheme=int2"], "scheme"),
                                          (["dtype=bf16"], "dtype")])
def test_bad_settings_exit_2(tmp_path, capsys, args, message):
    rc, out = _qat(tmp_path, *args)
    assert rc == 2 and message in capsys.readouterr().err
    assert not out.exists()
