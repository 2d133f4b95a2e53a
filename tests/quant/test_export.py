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


@pytest.mark.parametrize("ftype", ["q4_0", "q4_1"])
def test_gguf_q4_blocks_hold_each_weight_to_its_rounding_bound(tmp_path, tokenizer, ftype):
    """Every 32-weight block of a q4 matrix, read back by the gguf library, is within the
    scheme's rounding of the fp32 weight: q4_0 stores x / d with d = -amax / 8 in [-8, 7]
    (the side opposite amax may clip: |error| <= |d|); q4_1 stores (x - min) / d with
    d = (max - min) / 15 in [0, 15] (|error| <= d / 2). Slack: d and min are f16."""
    from gguf import GGUFReader, dequantize

    model = load_model("tiny:llama").eval()
    path = export_gguf(model, tokenizer, tmp_path / f"m.{ftype}.gguf", ftype)
    tensors = {t.name: t for t in GGUFReader(str(path)).tensors}
    assert tensors["token_embd.weight"].tensor_type.name == "Q8_0"  # as llama.cpp's q4 mixes
    assert tensors["blk.0.attn_norm.weight"].tensor_type.name == "F32"
    t = tensors["blk.1.ffn_up.weight"]
    assert t.tensor_type.name == ftype.upper()
    w = model.model.layers[1].mlp.up_proj.weight.detach().numpy()
    back = dequantize(t.data, t.tensor_type).reshape(w.shape)
    blocks, err = w.reshape(-1, 32), abs(back - w).reshape(-1, 32).max(-1)
    lo, hi = blocks.min(-1), blocks.max(-1)
    if ftype == "q4_0":
        bound = abs(blocks).max(-1) / 8 * (1 + 2 ** -9)
    else:
        bound = (hi - lo) / 15 * (0.5 + 15 * 2 ** -11) + abs(lo) * 2 ** -11
    assert (err <= bound).all() and err.max() > 0
    assert (err > 0.25 * bound).any()  # 4-bit rounding is there: not stored at full precision
