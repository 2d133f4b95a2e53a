"""The same stages on a CUDA device: AMP (bf16 autocast, fp16 with loss scaling), exact
resume, and decode parity with HF `generate`. Marked `gpu`: the default run skips them; on a
GPU machine run `pytest -m gpu tests/gpu`."""

import json
from pathlib import Path

import pytest
import torch

from lmlab.cli import main

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

DATA = str(Path(__file__).resolve().parents[1] / "assets" / "sft" / "chat.jsonl")


def _sft(tmp_path, *extra, name="run"):
    out = tmp_path / name
    args = ["sft", "model=tiny:llama", f"data={DATA}", f"output_dir={out}", "max_steps=3",
            "batch_size=4", "lr=1e-2", "warmup_steps=0", "progress=false", "eval_n=0",
            "device=cuda", *extra]
    return main(args), out


def _rows(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("dtype", ["bf16", "fp16", "fp32"])
@pytest.mark.parametrize("method", ["full", "lora"])
def test_sft_amp_smoke(tmp_path, dtype, method):
    rc, out = _sft(tmp_path, f"dtype={dtype}", f"method={method}", "max_steps=6")
    assert rc == 0
    losses = [r["train/loss"] for r in _rows(out)]
    assert len(losses) == 6 and all(map(lambda x: x == x and abs(x) < 1e4, losses))
    assert losses[-1] < losses[0], losses  # lr 1e-2 on 8 rows: it must fit them
    from transformers import AutoModelForCausalLM

    final = AutoModelForCausalLM.from_pretrained(out / "final")
    assert all(p.dtype == torch.float32 for p in final.parameters())  # master weights saved fp32


def test_fp16_loss_scale_is_checkpointed(tmp_path):
    """fp16 without scaling underflows small gradients: the loop carries a GradScaler, and its
    scale goes into each checkpoint so a resumed run continues with the same scale."""
    rc, out = _sft(tmp_path, "dtype=fp16", "method=full", "save_every=1", "max_steps=2")
    assert rc == 0
    state = torch.load(out / "checkpoints" / "step-2" / "state.pt", weights_only=False)
    assert state["extra"]["scaler"]["scale"] > 0


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_resume_equals_uninterrupted_on_cuda(tmp_path, dtype):
    common = ("method=full", "schedule=constant", "save_every=1", f"dtype={dtype}")
    assert _sft(tmp_path, *common, "max_steps=4", name="full")[0] == 0
    assert _sft(tmp_path, *common, "max_steps=2", name="part")[0] == 0
    rc, part = _sft(tmp_path, *common, "max_steps=4", "resume=auto", name="part")
    assert rc == 0
    a, b = _rows(tmp_path / "full")[-1], _rows(part)[-1]
    assert b["step"] == 4 and a["train/loss"] == b["train/loss"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_greedy_equals_hf_generate_on_cuda(dtype):
    from lmlab.infer.decode import generate
    from lmlab.infer.sampling import SamplingParams
    from lmlab.models import load_model, load_tokenizer

    tok = load_tokenizer("tiny:llama")
    model = load_model("tiny:llama")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # varied weights: the default init repeats one token
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    model = model.to("cuda", dtype).eval()
    prompts = ["The capital of France is", "1 2 3 4", "Hello there, how are you today?"]
    ours = generate(model, tok, prompts, SamplingParams(temperature=0, max_new_tokens=20,
                                                       ignore_eos=True), batch_size=8)
    for prompt, c in zip(prompts, ours):
        ids = tok(prompt, return_tensors="pt").input_ids.cuda()
        ref = model.generate(ids, max_new_tokens=20, do_sample=False, min_new_tokens=20,
                             pad_token_id=tok.pad_token_id)
        assert c.token_ids == ref[0, ids.shape[1]:].tolist(), prompt


@pytest.mark.parametrize("stage", ["dpo", "reward"])
def test_preference_stages_on_cuda(tmp_path, stage):
    out = tmp_path / stage
    rc = main([stage, "model=tiny:llama", "data=task:compare", f"output_dir={out}",
               "max_steps=3", "batch_size=4", "progress=false", "device=cuda", "dtype=bf16",
               "eval_n=8", "data_limit=32"] + (["task_eval_n=0", "kl_n=2"] if stage == "dpo"
                                               else []))
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3
