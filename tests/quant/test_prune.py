"""Magnitude pruning: exact sparsity, the smallest weights go, structured models shrink."""

import pytest
import torch

from lmlab.errors import ConfigError
from lmlab.models import load_model
from lmlab.quant.prune import count_zeros, prune


def test_unstructured_zeroes_exactly_the_smallest():
    model = load_model("tiny:llama")
    w = model.model.layers[1].mlp.down_proj.weight.detach().clone()
    stats = prune(model, "unstructured", 0.3)
    zeros, total = count_zeros(model)
    per_layer = [round(0.3 * m.weight.numel()) for layer in model.model.layers
                 for m in layer.modules() if isinstance(m, torch.nn.Linear)]
    assert zeros == stats["zeroed"] == sum(per_layer)
    assert total == stats["pruned_params"]
    after = model.model.layers[1].mlp.down_proj.weight
    kept = w.abs()[after != 0]
    assert kept.min() >= w.abs()[after == 0].max()  # nothing kept is smaller than what went
    assert torch.equal(after[after != 0], w[after != 0])


def test_structured_cuts_mlp_channels_and_still_runs(tmp_path):
    from transformers import AutoModelForCausalLM

    model = load_model("tiny:llama")
    stats = prune(model, "structured", 0.25)
    assert stats["mlp_channels_after"] == 96 and model.config.intermediate_size == 96
    assert all(layer.mlp.down_proj.weight.shape == (64, 96) for layer in model.model.layers)
    model.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)


def test_structured_keeps_the_strongest_channels():
    model = load_model("tiny:llama")
    mlp = model.model.layers[0].mlp
    with torch.no_grad():
        mlp.gate_proj.weight[5] *= 100  # channel 5 must survive, channel 9 must go
        mlp.up_proj.weight[9] = mlp.gate_proj.weight[9] = mlp.down_proj.weight[:, 9] = 0
        ref = mlp.gate_proj.weight[5].clone()
    prune(model, "structured", 0.5)
    rows = model.model.layers[0].mlp.gate_proj.weight
    assert any(torch.equal(r, ref) for r in rows)
    assert not any(bool((r == 0).all()) for r in rows)


@pytest.mark.parametrize("kind,sparsity", [("random", 0.5), ("unstructured", 1.0)])
def test_bad_prune_settings_are_config_errors(kind, sparsity):
    with pytest.raises(ConfigError):
        prune(load_model("tiny:llama"), kind, sparsity)
