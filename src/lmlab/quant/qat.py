"""Quantization-aware training with torchao's fake quantization: prepare -> train -> convert.

``prepare`` swaps each decoder ``nn.Linear`` for torchao's ``FakeQuantizedLinear``: the forward
rounds weights (and, for int8-dynamic-int4, activations per token) to the target grid and back,
while gradients pass straight through the rounding, so training learns weights that survive it.
``convert`` swaps them back and applies the real PTQ config, so the result has exactly the
tensor layout of ``ptq.quantize_model`` with the same method (and reloads the same way).

The LM head is left out of fake quantization: when it is tied to the embedding it becomes the
shared int8 table at convert time, as in PTQ. Only the int4 schemes are offered: at 8 bits PTQ
already loses almost nothing (docs/quantize.md), so there is nothing for QAT to recover.
"""

from __future__ import annotations

import torch

from lmlab.quant.ptq import Recipe, quantize_embeddings, require, torchao_config

SCHEMES = ("int8-dynamic-int4", "int4-weight")


def _linear_filter(model):
    head = model.get_output_embeddings()
    return lambda mod, fqn: isinstance(mod, torch.nn.Linear) and mod is not head


def prepare(model, recipe: Recipe):
    """Insert fake quantization (in place); returns the model."""
    require("torchao")
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    base = torchao_config(recipe.method, recipe.group_size, device="cpu")
    quantize_(model, QATConfig(base, step="prepare"), filter_fn=_linear_filter(model))
    return model


def is_prepared(model) -> bool:
    from torchao.quantization.qat.linear import FakeQuantizedLinear

    return any(isinstance(m, FakeQuantizedLinear) for m in model.modules())


@torch.no_grad()
def convert(model, recipe: Recipe):
    """Fake-quantized model -> real quantized model with the PTQ layout of ``recipe``."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig
    from torchao.quantization.qat.linear import FakeQuantizedLinear

    model.eval()
    base = torchao_config(recipe.method, recipe.group_size, device="cpu")
    head, emb = model.get_output_embeddings(), model.get_input_embeddings()
    tied = head is not None and head.weight is emb.weight
    quantize_(model, QATConfig(base, step="convert"),
              filter_fn=lambda mod, fqn: isinstance(mod, FakeQuantizedLinear))
    if recipe.embeddings:
        quantize_embeddings(model)
        if tied:
            head.weight = model.get_input_embeddings().weight
    return model
