"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2020), written by us: peft has
no such tuner.

An adapter maps a block's output h (B, T, D) to h + up(act(down(h))), with down: D -> r and
up: r -> D. ``up`` starts at zero, so an adapted model computes exactly what its base did until
the first update. Houlsby puts one after the attention block and one after the MLP of every
decoder layer; Pfeiffer only after the MLP. They are inserted by composition: each adapted
submodule is replaced by ``Adapted(inner, adapter)``, which runs the original module, then the
adapter on its output; the base's own modules and weights are left as they were.

Saved as ``bottleneck.safetensors`` (the adapter weights only) + ``bottleneck_config.json``
next to an ``lmlab.json`` that names the base model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from lmlab.errors import ConfigError

CONFIG_FILE = "bottleneck_config.json"
WEIGHTS_FILE = "bottleneck.safetensors"
STYLES = {"houlsby": ("self_attn", "mlp"), "pfeiffer": ("mlp",)}
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


@dataclass(frozen=True)
class BottleneckConfig:
    dim: int = 16  # r, the bottleneck width
    style: str = "houlsby"
    activation: str = "relu"


class Bottleneck(nn.Module):
    """h -> h + up(act(down(h))); ``up`` zero-initialised (identity at step 0)."""

    def __init__(self, width: int, dim: int, activation: str):
        super().__init__()
        self.down = nn.Linear(width, dim)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(dim, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        return h + self.up(self.act(self.down(h)))


class Adapted(nn.Module):
    """A submodule followed by a bottleneck adapter on its (first) output."""

    def __init__(self, inner: nn.Module, adapter: Bottleneck):
        super().__init__()
        self.inner = inner
        self.adapter = adapter

    def forward(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        if isinstance(out, tuple):  # attention returns (output, weights)
            return (self.adapter(out[0]), *out[1:])
        return self.adapter(out)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a transformers causal LM (``model.model.layers`` for llama,
    qwen, mistral, ...)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ConfigError(f"method=adapter: {type(model).__name__} has no model.layers list "
                          f"of decoder layers to insert bottleneck adapters into")
    return layers


def add_bottleneck(model: nn.Module, cfg: BottleneckConfig) -> nn.Module:
    """Freeze ``model`` and insert adapters (trainable) in place; returns ``model``."""
    width = model.config.hidden_size
    for p in model.parameters():
        p.requires_grad_(False)
    ref = next(model.parameters())
    for i, layer in enumerate(decoder_layers(model)):
        for name in STYLES[cfg.style]:
            inner = getattr(layer, name, None)
            if inner is None:
                raise ConfigError(f"adapter_style={cfg.style}: decoder layer {i} has no "
                                  f"'{name}' submodule")
            adapter = Bottleneck(width, cfg.dim, cfg.activation).to(ref.device, ref.dtype)
            setattr(layer, name, Adapted(inner, adapter))
    model.lmlab_bottleneck = cfg
    return model


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights, keyed ``layers.<i>.<submodule>.<down|up>.<weight|bias>``."""
    out = {}
    for i, layer in enumerate(decoder_layers(model)):
        for name, mod in layer.named_children():
            if isinstance(mod, Adapted):
                for k, v in mod.adapter.state_dict().items():
                    out[f"layers.{i}.{name}.{k}"] = v.detach().contiguous().cpu()
    return out


def save_bottleneck(model: nn.Module, folder: str | Path) -> None:
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(adapter_state(model), str(folder / WEIGHTS_FILE))
    cfg: BottleneckConfig = model.lmlab_bottleneck
    (folder / CONFIG_FILE).write_text(json.dumps(asdict(cfg), indent=2) + "\n")


def read_config(folder: str | Path) -> BottleneckConfig:
    raw = json.loads(Path(folder, CONFIG_FILE).read_text(encoding="utf-8"))
    return BottleneckConfig(**raw)


def load_bottleneck(base: nn.Module, folder: str | Path) -> nn.Module:
    """``base`` with the adapters saved in ``folder`` inserted (and frozen: an inference
    model; training sets ``requires_grad`` itself)."""
    from safetensors.torch import load_file

    model = add_bottleneck(base, read_config(folder))
    state = load_file(str(Path(folder, WEIGHTS_FILE)))
    layers = decoder_layers(model)
    expect = adapter_state(model)
    if set(state) != set(expect):
        raise ValueError(f"{folder}: adapter weights {sorted(set(state) ^ set(expect))[:4]} "
                         f"do not match the base model's layers")
    with torch.no_grad():
        for key, value in state.items():
            _, i, name, rest = key.split(".", 3)
            target = getattr(layers[int(i)], name).adapter.get_parameter(rest)
            target.copy_(value.to(target.dtype))
    for p in model.parameters():
        p.requires_grad_(False)
    return model
