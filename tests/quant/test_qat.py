"""QAT prepare/convert: fake quantization is in the forward, convert gives the PTQ layout."""

import pytest
import torch

from lmlab.models import load_model
from lmlab.quant import qat
from lmlab.quant.ptq import Recipe, quantize_model

pytest.importorskip("torchao")
IDS = torch.tensor([[1, 2, 3, 40, 500, 6000]])


@pytest.mark.parametrize("scheme", qat.SCHEMES)
def test_convert_without_training_equals_ptq(scheme):
    recipe = Recipe(scheme)
    model = qat.prepare(load_model("tiny:llama"), recipe)
    assert qat.is_prepared(model)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # the head stays tied
    with torch.no_grad():
        fake = model(IDS).logits
    qat.convert(model, recipe)
    assert not qat.is_prepared(model)
    ptq = quantize_model(load_model("tiny:llama"), recipe)
    with torch.no_grad():
        real = model(IDS).logits
        assert torch.equal(real, ptq(IDS).logits)
    # the fake-quant forward simulates the real one (the int8 table is the only difference)
    assert float((fake - real).norm() / real.norm()) < 0.05


def test_fake_quant_changes_the_forward_and_passes_gradients():
    fp32 = load_model("tiny:llama")
    model = qat.prepare(load_model("tiny:llama"), Recipe("int4-weight"))
    with torch.no_grad():
        assert not torch.equal(model(IDS).logits, fp32(IDS).logits)
    model(IDS, labels=IDS).loss.backward()
    grad = model.model.layers[0].mlp.up_proj.weight.grad
    assert grad is not None and grad.abs().sum() > 0
