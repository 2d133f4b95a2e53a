"""SmoothQuant scaling keeps the float model's function and shrinks activation outliers."""

import torch

from lmlab.models import load_model, load_tokenizer
from lmlab.quant import smooth


def test_smoothing_preserves_the_function_and_flattens_inputs():
    tok = load_tokenizer("tiny:llama")
    model = load_model("tiny:llama").eval()
    with torch.no_grad():  # give one input channel of layer 0's MLP an outlier
        model.model.layers[0].post_attention_layernorm.weight[3] = 50.0
    batches = smooth.calibration_batches(tok, n=4)
    ids = batches[0]["input_ids"]
    with torch.no_grad():
        ref = model(input_ids=ids).logits
    stats = smooth.input_absmax(model, batches)
    before = stats["model.layers.0.mlp.gate_proj"]
    smooth.smooth(model, stats, alpha=0.5)
    with torch.no_grad():
        out = model(input_ids=ids).logits
    assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4)
    after = smooth.input_absmax(model, batches)["model.layers.0.mlp.gate_proj"]
    ratio = lambda x: float(x.max() / x.median())  # noqa: E731
    assert ratio(after) < ratio(before) / 3
    assert model.lm_head.weight is not model.model.embed_tokens.weight  # head untied first
