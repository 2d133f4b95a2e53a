"""Post-training quantization: one name per method, each a recipe applied to a loaded model.

| method            | weights            | activations        | backend (CPU)                      |
|-------------------|--------------------|--------------------|------------------------------------|
| fp16, bf16        | 16-bit float       | same               | a cast (slow matmuls on AVX2)      |
| int8-weight       | int8 per row       | fp32               | torchao ``Int8WeightOnlyConfig``   |
| int8-dynamic      | int8 per row       | int8 per token     | torchao ``Int8DynamicActivation-`` |
|                   |                    |                    | ``Int8WeightConfig``               |
| int4-weight       | int4 per group     | fp32               | torchao ``IntxWeightOnlyConfig``   |
|                   |                    |                    | (``Int4WeightOnlyConfig`` on CUDA) |
| int8-dynamic-int4 | int4 per group     | int8 per token     | torchao ``Int8DynamicActivation-`` |
|                   |                    |                    | ``IntxWeightConfig`` (QAT's target)|
| fbgemm-int8       | int8 per row       | int8 per tensor    | torch's own x86 int8 GEMM (fbgemm) |
| fbgemm-fp16       | fp16               | fp32               | torch's own x86 fp16 GEMM (fbgemm) |
| nf4, bnb-int8     | NF4 / LLM.int8()   | fp32 / fp16        | bitsandbytes (loads from a folder) |

``embeddings=True`` also stores the input embedding as int8 rows (torchao ``IntxWeightOnly``,
one scale per row). In SmolLM2-135M the tied 49152 x 576 table is 21 % of the weights, so
without it int8 stops at ~2.2x smaller than fp32. A tied LM head keeps using the same int8
table (stored once); fbgemm-int8 unties it instead so the head runs fbgemm's int8 GEMV (the
table is then stored twice, as int8).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from lmlab.errors import ConfigError, UserError

TORCHAO = ("int8-weight", "int8-dynamic", "int4-weight", "int8-dynamic-int4")
BNB = ("nf4", "bnb-int8")
CASTS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
FBGEMM = {"fbgemm-int8": torch.qint8, "fbgemm-fp16": torch.float16}
METHODS = tuple(CASTS) + TORCHAO + tuple(FBGEMM) + BNB
BITS = {"fp32": 32, "fp16": 16, "bf16": 16, "int8-weight": 8, "int8-dynamic": 8,
        "int4-weight": 4, "int8-dynamic-int4": 4, "fbgemm-int8": 8, "fbgemm-fp16": 16, "nf4": 4,
        "bnb-int8": 8}


@dataclass(frozen=True)
class Recipe:
    method: str
    group_size: int = 32  # int4 methods: weights per scale
    embeddings: bool = True  # also quantize the embedding table (and untie the LM head)

    def __post_init__(self):
        problems = []
        if self.method not in METHODS:
            problems.append(f"method: '{self.method}' is not one of {', '.join(METHODS)}")
        if self.group_size not in (32, 64, 128, 256):
            problems.append(f"group_size: {self.group_size} is not one of 32, 64, 128, 256")
        if problems:
            raise ConfigError(problems)

    @property
    def needs_folder(self) -> bool:
        """bitsandbytes quantizes while transformers loads weights from a folder."""
        return self.method in BNB

    def as_dict(self) -> dict:
        return {"method": self.method, "group_size": self.group_size,
                "embeddings": self.embeddings}


def torchao_config(method: str, group_size: int = 32, device: str = "cpu"):
    """The torchao config object for a torchao method (also QAT's base config)."""
    from torchao.quantization import (
        Int8DynamicActivationInt8WeightConfig,
        Int8DynamicActivationIntxWeightConfig,
        Int8WeightOnlyConfig,
        IntxWeightOnlyConfig,
        PerAxis,
        PerGroup,
    )

    if method == "int8-weight":
        return Int8WeightOnlyConfig()
    if method == "int8-dynamic":
        return Int8DynamicActivationInt8WeightConfig()
    if method == "int4-weight":
        if device == "cuda":  # the packed tinygemm kernel exists only there
            from torchao.quantization import Int4WeightOnlyConfig

            return Int4WeightOnlyConfig(group_size=group_size)
        return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(group_size))
    if method == "int8-dynamic-int4":
        return Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4,
                                                     weight_granularity=PerGroup(group_size))
    if method == "int8-weight-intx":  # QAT's int8 weight-only target
        return IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0))
    raise ConfigError(f"method: '{method}' is not a torchao method ({', '.join(TORCHAO)})")


def require(package: str, extra: str = "quant") -> None:
    import importlib.util

    if importlib.util.find_spec(package) is None:
        raise UserError(f"this method needs the package '{package}': "
                        f"pip install 'lmlab[{extra}]'")


def untie_lm_head(model) -> None:
    """Give the LM head its own copy of the embedding table, so each can be quantized."""
    head, emb = model.get_output_embeddings(), model.get_input_embeddings()
    if head is not None and head.weight is emb.weight:
        head.weight = torch.nn.Parameter(emb.weight.detach().clone(), requires_grad=False)
    model.config.tie_word_embeddings = False
    text = model.config.get_text_config(decoder=True)
    text.tie_word_embeddings = False


class Int8Embedding(torch.nn.Module):
    """An embedding lookup that gathers rows of an int8 per-row table (a torchao
    ``IntxUnpackedToInt8Tensor``) and scales only those rows. torchao's own embedding path
    dequantizes the whole table per call (333 ms for SmolLM2's 49152 x 576 table, one thread);
    this costs what an fp32 lookup does. ``weight`` may be the same tensor as a tied LM head's."""

    def __init__(self, weight: torch.nn.Parameter, padding_idx: int | None = None):
        super().__init__()
        self.weight = weight
        self.padding_idx = padding_idx

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        w = self.weight
        rows = torch.nn.functional.embedding(ids, w.qdata).to(w.dtype)  # (B, T, D)
        zero = torch.nn.functional.embedding(ids, w.zero_point).to(w.dtype)  # (B, T, 1)
        scale = torch.nn.functional.embedding(ids, w.scale).to(w.dtype)  # (B, T, 1)
        return (rows - zero) * scale


def quantize_embeddings(model) -> None:
    """Int8 rows for the input embedding table (torchao IntxWeightOnly, per-row scale), looked
    up row by row through ``Int8Embedding``."""
    from torchao.quantization import IntxWeightOnlyConfig, PerAxis, quantize_

    quantize_(model, IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0)),
              filter_fn=lambda m, fqn: isinstance(m, torch.nn.Embedding))
    emb = model.get_input_embeddings()
    model.set_input_embeddings(Int8Embedding(emb.weight, getattr(emb, "padding_idx", None)))


@torch.no_grad()
@functools.cache
def int8_matmul_saturates() -> bool:
    """Whether torch's s8 x s8 -> s32 matmul (int8-dynamic's kernel) is inexact on this CPU.

    Without VNNI (AVX2-only parts such as AMD Zen 2/3; AVX-512 parts without VNNI) oneDNN
    multiplies int8 pairs with vpmaddubsw, whose 16-bit pair sums saturate (oneDNN#717): two
    products of 127 x 127 already overflow. Measured in tests/quant/test_ptq.py: the tiny
    model's logits drift ~10% there, against ~1.5% where the product is exact."""
    a = torch.full((32, 64), 127, dtype=torch.int8)
    return not torch.equal(torch._int_mm(a, a.t().contiguous()), a.int() @ a.int().t())


def quantize_model(model, recipe: Recipe):
    """Quantize an fp32 model in place (and return it) for every method but bitsandbytes's."""
    m = recipe.method
    if recipe.needs_folder:
        raise UserError(f"{m} quantizes while loading: use load_bnb(folder, recipe)")
    if m in CASTS:
        return model.to(CASTS[m])
    require("torchao")
    model.eval()
    head, emb = model.get_output_embeddings(), model.get_input_embeddings()
    tied = head is not None and head.weight is emb.weight
    if m in FBGEMM:
        if recipe.embeddings:
            untie_lm_head(model)  # the head gets fbgemm's fast GEMV, the table int8 rows
        _fbgemm(model, FBGEMM[m])
        if recipe.embeddings:
            quantize_embeddings(model)
        return model
    from torchao.quantization import quantize_

    keep_tied = recipe.embeddings and tied
    if recipe.embeddings:
        quantize_embeddings(model)
        if keep_tied:  # one int8 table serves the lookup and the LM head (F.linear on it)
            head.weight = model.get_input_embeddings().weight
    device = next(model.parameters()).device.type
    if m == "int8-dynamic" and device == "cpu" and int8_matmul_saturates():
        from lmlab.common import print0

        print0("[lmlab] warning: torch's int8 x int8 matmul saturates on this CPU (no VNNI: "
               "16-bit partial sums), so int8-dynamic's outputs drift several times more than "
               "on a VNNI CPU; int8-weight does not use that kernel")
    quantize_(model, torchao_config(m, recipe.group_size, device),
              filter_fn=lambda mod, fqn: isinstance(mod, torch.nn.Linear)
              and not (keep_tied and mod is head))
    return model


def _fbgemm(model, dtype: torch.dtype) -> None:
    """torch's dynamic linears (x86 fbgemm kernels), weights packed once. int8: weight scales
    per output channel, activations quantized per *tensor* at run time - fast (the 49152-row
    LM head: 2.7 ms vs 11 ms fp32, one thread) but SmolLM2's activation outliers cost it
    perplexity. fp16: fp16 weights, fp32 activations - half the bytes to read, no loss."""
    engines = torch.backends.quantized.supported_engines
    if "fbgemm" not in engines and "x86" not in engines:
        raise UserError(f"fbgemm methods need an x86 CPU build of torch; this one has {engines}")
    import warnings

    from torch.ao import quantization as tq

    with warnings.catch_warnings():  # torch.ao eager quantization is deprecated but works
        warnings.simplefilter("ignore")
        # per-channel weight scales: per-tensor ones (the default) cost SmolLM2 its fluency
        qconfig = tq.per_channel_dynamic_qconfig if dtype == torch.qint8 else \
            tq.float16_dynamic_qconfig
        tq.quantize_dynamic(model, {torch.nn.Linear: qconfig}, dtype=dtype, inplace=True)


def bnb_config(recipe: Recipe):
    from transformers import BitsAndBytesConfig

    if recipe.method == "nf4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_compute_dtype=torch.float32)
    return BitsAndBytesConfig(load_in_8bit=True)


def load_bnb(folder: str, recipe: Recipe, device: str = "cpu"):
    """An fp32 folder loaded through bitsandbytes (NF4 or LLM.int8()); a clear error where
    bitsandbytes has no backend for the device."""
    require("bitsandbytes")
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(folder, quantization_config=bnb_config(recipe),
                                                    dtype=torch.float32, device_map=device)
    except (RuntimeError, ImportError, ValueError) as e:
        raise UserError(f"bitsandbytes could not quantize on {device} ({e}); use a torchao "
                        f"method (int8-weight, int4-weight) instead") from e


def weight_bytes(model) -> int:
    """Bytes held by the model's parameters and buffers as stored (quantized data + scales)."""
    from lmlab.quant.export import state_bytes

    return state_bytes(model.state_dict())
