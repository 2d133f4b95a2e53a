"""Quantized folders reload bit-exactly; GGUF f16 / q8_0 reload in transformers."""

import pytest
import torch

from lmlab.errors import UserError
from lmlab.models import load_model, load_tokenizer
from lmlab.quant.export import export_gguf, load_gguf, save_quantized
from lmlab.quant.ptq import Recipe, quantize_model

pytest.importorskip("torchao")

MODEL = "tiny:llama-wide"
IDS = torch.tensor([[1, 17, 300, 4000, 42, 7, 9, 11]])


@pytest.mark.parametrize("method", ["int8-weight", "int4-weight", "fbgemm-int8", "fbgemm-fp16",
                                    "fp16"])
def test_quantized_folder_reloads_exactly(tmp_path, tokenizer, method):
    model = quantize_model(load_model(MODEL), Recipe(method))
    save_quantized(model, tokenizer, tmp_path, Recipe(method))
    again = load_model(str(tmp_path), dtype=torch.float16 if method == "fp16" else torch.float32)
    saved, loaded = model.state_dict(), again.state_dict()
    assert saved.keys() == loaded.keys()
    if method != "fp16":  # same tensor types: the forward itself must be identical
        with torch.no_grad():
            assert torch.equal(model(IDS).logits, again(IDS).logits)
    else:
        assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert load_tokenizer(str(tmp_path)).chat_template == tokenizer.chat_template


@pytest.mark.parametrize("ftype,tol", [pytest.param("f16", 0.002, marks=pytest.mark.slow),
                                       ("q8_0", 0.03)])
def test_gguf_round_trip(tmp_path, tokenizer, ftype, tol):
    """Relative logit error after GGUF export -> transformers gguf_file= load (measured on this
    model: f16 4e-4, q8_0 9e-3)."""
    model = load_model(MODEL).eval()
    path = export_gguf(model, tokenizer, tmp_path / f"model.{ftype}.gguf", ftype)
    again, tok = load_gguf(path, tokenizer=ftype == "q8_0")  # the tokenizer is the same
    with torch.no_grad():
        ref, out = model(IDS).logits, again(IDS).logits
    assert 0 < float((out - ref).norm() / ref.norm()) < tol
    assert again.config.num_key_value_heads == model.config.num_key_value_heads
    if tok is None:
        return
    text = "Hello world, 12 + 7 = 19."
    assert tok(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert tok.chat_template == tokenizer.chat_template


def test_gguf_q8_is_smaller_than_f16(tmp_path, tokenizer):
    model = load_model("tiny:llama")
    f16 = export_gguf(model, tokenizer, tmp_path / "a.gguf", "f16").stat().st_size
    q8 = export_gguf(model, tokenizer, tmp_path / "b.gguf", "q8_0").stat().st_size
    assert q8 < 0.7 * f16  # the tokenizer (~3 MB) is in both


def test_gguf_refuses_quantized_model(tmp_path, tokenizer):
    model = quantize_model(load_model("tiny:llama"), Recipe("int8-weight"))
    with pytest.raises(UserError, match="quantized weights"):
        export_gguf(model, tokenizer, tmp_path / "x.gguf", "q8_0")
    assert not (tmp_path / "x.gguf").exists()
