"""Memory and time planning for training a llama-shaped model on N devices: pure arithmetic.

Per device, in bytes (W devices, N parameters, T of them trainable, L blocks of B parameters,
R parameters outside the blocks: embeddings, final norm, untied head):

    weights      ddp: w N (+ c N under autocast) fsdp: w N / W + c (2 B + R)
    gradients    ddp: 4 T (x2 with W > 1)      fsdp: 4 T / W + 4 (B_t + R_t)
    optimizer    8 T (AdamW's two fp32 moments; / W under fsdp)
    activations  b s [L (11 d + 4 f) + 4 d] c  + k 3 V 4       (k = trained tokens, b s here)
                 checkpointing: b s [L d + (11 d + 4 f) + 4 d] c + k 3 V 4

w is the bytes of a held weight (4: fp32, also fp32 master weights under bf16 autocast), c of
a computed one (2 in bf16 on a GPU, 4 on a CPU). fsdp keeps its shard plus the gathered weights
of the block it runs and the one it prefetches, and the root's (reshard_after_forward=False);
DDP with W > 1 keeps gradient buckets as large as the gradients. +offload moves the shards
(weights, gradients, optimizer) to host memory; the device keeps the gathered copies, the
unsharded gradients in flight and the activations. LoRA trains r (in + out) per adapted linear;
QLoRA holds the block linears in NF4 (4 bits + a 4-bit-equivalent share of scales: 0.5625 B).

The peak is weights + optimizer + max(activations (+ DDP's buckets), gradients): backward frees
each block's activations as it makes that block's gradients, so the two do not add up (measured:
summing them over-predicts the 135M model's peak by 23%).

The activation count is per token and block, from what autograd saves in a llama block with
SDPA attention: 3 d per RMSNorm (input, normalised, scaled) x 2, q k v and the output 4 d (GQA
keys repeated to full width), the output projection's input d, and the SwiGLU MLP's gate, its
SiLU, up and their product 4 f. The head saves logits, log-probabilities and their gradient
(3 V in fp32) per trained token. Checkpointing keeps each block's input (d) and recomputes one
block at a time.

Time: training costs 6 N FLOPs a token (8 N with checkpointing: one more forward), plus the
attention's 12 L d s; tokens/s = devices x TFLOP/s x MFU / FLOPs a token, or a stated rate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

GB = 2**30
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
NF4_BYTES = 0.5625  # 4-bit weights + fp32 absmax per 64 (bitsandbytes NF4, no double quant)


@dataclass(frozen=True)
class Shape:
    """A llama-shaped decoder."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool = True

    @property
    def kv_width(self) -> int:
        return self.kv_heads * (self.hidden // self.heads)

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each block linear."""
        d, f, kv = self.hidden, self.intermediate, self.kv_width
        return {"q_proj": (d, d), "k_proj": (d, kv), "v_proj": (d, kv), "o_proj": (d, d),
                "gate_proj": (d, f), "up_proj": (d, f), "down_proj": (f, d)}

    @property
    def block_linear(self) -> int:
        return sum(i * o for i, o in self.linear_shapes().values())

    @property
    def block(self) -> int:
        return self.block_linear + 2 * self.hidden  # + two RMSNorm weights

    @property
    def root(self) -> int:
        """Parameters outside the blocks: embeddings, final norm, the head unless tied."""
        emb = self.vocab * self.hidden
        return emb + self.hidden + (0 if self.tied else emb)

    @property
    def params(self) -> int:
        return self.layers * self.block + self.root


# size presets (architectures as published)
SHAPES: dict[str, Shape] = {
    "tiny": Shape(2, 64, 128, 4, 2, 49152),  # tiny:llama
    "135m": Shape(30, 576, 1536, 9, 3, 49152),  # SmolLM2-135M
    "1.7b": Shape(24, 2048, 8192, 32, 32, 49152),  # SmolLM2-1.7B
    "7b": Shape(32, 4096, 11008, 32, 32, 32000, tied=False),  # Llama-2-7B
    "8b": Shape(32, 4096, 14336, 32, 8, 128256, tied=False),  # Llama-3-8B
    "70b": Shape(80, 8192, 28672, 64, 8, 128256, tied=False),  # Llama-3-70B
}

# usable memory per device (GiB) of common parts
DEVICES: dict[str, float] = {"t4": 15, "l4": 22, "a10g": 22, "a100-40": 40, "a100-80": 80,
                             "h100": 80, "h200": 141, "cpu-16": 16}


@dataclass(frozen=True)
class Setup:
    method: str = "full"  # full | lora | qlora
    lora_r: int = 16
    lora_targets: tuple[str, ...] = LINEARS
    seq_len: int = 512
    batch: int = 1  # micro-batch per device
    devices: int = 1
    weight_bytes: int = 4
    compute_bytes: int = 4
    trained_fraction: float = 1.0  # share of tokens with a label (the head's cost follows it)


def trainable(shape: Shape, s: Setup) -> tuple[int, int]:
    """(trainable parameters in all, per block)."""
    if s.method == "full":
        return shape.params, shape.block
    per_block = sum(s.lora_r * (i + o) for n, (i, o) in shape.linear_shapes().items()
                    if n in s.lora_targets)
    return shape.layers * per_block, per_block


def weights_bytes(shape: Shape, s: Setup) -> float:
    """Bytes of the whole model's held weights (QLoRA: quantized block linears)."""
    if s.method == "qlora":
        rest = shape.params - shape.layers * shape.block_linear
        return shape.layers * shape.block_linear * NF4_BYTES + rest * s.compute_bytes
    lora = trainable(shape, s)[0] if s.method == "lora" else 0
    return (shape.params + lora) * s.weight_bytes


def activation_bytes(shape: Shape, s: Setup, checkpointing: bool = False) -> float:
    d, f, c = shape.hidden, shape.intermediate, s.compute_bytes
    tokens = s.batch * s.seq_len
    block = 11 * d + 4 * f
    per_token = (shape.layers * d + block if checkpointing else shape.layers * block) + 4 * d
    return tokens * per_token * c + tokens * s.trained_fraction * 3 * shape.vocab * 4


def memory(shape: Shape, s: Setup, strategy: str = "ddp", *, offload: bool = False,
           checkpointing: bool = False) -> dict[str, float]:
    """Bytes per device by part, and their total. ``strategy``: ddp | fsdp."""
    if strategy not in ("ddp", "fsdp"):
        raise ValueError(f"strategy {strategy!r}: ddp or fsdp")
    t, t_block = trainable(shape, s)
    w_all, world = weights_bytes(shape, s), s.devices
    t_root = shape.root if s.method == "full" else 0
    if strategy == "ddp":
        # under bf16 autocast the forward caches a bf16 copy of every weight it casts
        cast = s.compute_bytes * shape.params if s.compute_bytes < s.weight_bytes \
            and s.method != "qlora" else 0
        out = {"weights": w_all + cast, "gradients": 4 * t * (2 if world > 1 else 1),
               "optimizer": 8 * t}
    else:
        gathered = s.compute_bytes * (2 * shape.block + shape.root)
        out = {"weights": (0 if offload else w_all / world) + gathered,
               "gradients": (0 if offload else 4 * t / world) + 4 * (t_block + t_root),
               "optimizer": 0 if offload else 8 * t / world}
    out["activations"] = activation_bytes(shape, s, checkpointing)
    # backward frees activations as it makes gradients: the peak is at its start (activations,
    # plus DDP's persistent buckets) or at its end (every gradient), not their sum
    buckets = 4 * t if strategy == "ddp" and world > 1 else 0
    out["total"] = out["weights"] + out["optimizer"] + max(out["activations"] + buckets,
                                                           out["gradients"])
    return out


def scenarios(shape: Shape, s: Setup) -> list[dict]:
    """The plan's rows: each strategy with and without checkpointing, in GiB. (lmlab does not
    shard a bitsandbytes QLoRA base: QLoRA gets the ddp rows only.)"""
    rows = []
    kinds = (("ddp", "ddp", False), ("fsdp", "fsdp", False), ("fsdp+offload", "fsdp", True))
    for name, strategy, offload in kinds[:1] if s.method == "qlora" else kinds:
        for ckpt in (False, True):
            m = memory(shape, s, strategy, offload=offload, checkpointing=ckpt)
            rows.append({"strategy": name, "checkpointing": ckpt,
                         **{k: v / GB for k, v in m.items()}})
    return rows


def flops_per_token(shape: Shape, seq_len: int, checkpointing: bool = False,
                    method: str = "full") -> float:
    """Training FLOPs per token: 6 N (forward 2 N, backward 4 N) + attention 12 L d s; with
    checkpointing one more forward (8 N). LoRA/QLoRA skip the frozen weights' gradients (about
    a third of the backward): 4 N."""
    n = shape.params
    base = (4 if method != "full" else 6) * n + 12 * shape.layers * shape.hidden * seq_len
    return base + (2 * n + 4 * shape.layers * shape.hidden * seq_len if checkpointing else 0)


def tokens_per_second(shape: Shape, s: Setup, *, tflops: float, mfu: float,
                      checkpointing: bool = False) -> float:
    """All devices together, from each device's peak TFLOP/s and the fraction reached."""
    return s.devices * tflops * 1e12 * mfu / flops_per_token(shape, s.seq_len, checkpointing,
                                                             s.method)


def wall_seconds(tokens: float, tokens_per_s: float) -> float:
    return tokens / tokens_per_s


def with_devices(s: Setup, devices: int) -> Setup:
    return replace(s, devices=devices)


def describe(shape: Shape) -> dict:
    return {**asdict(shape), "params": shape.params, "block_params": shape.block,
            "root_params": shape.root}


def shape_from_config(config) -> Shape:
    """A transformers llama-style config (LlamaConfig, MistralConfig, Qwen2Config, ...)."""
    heads = config.num_attention_heads
    return Shape(config.num_hidden_layers, config.hidden_size, config.intermediate_size, heads,
                 getattr(config, "num_key_value_heads", None) or heads, config.vocab_size,
                 bool(getattr(config, "tie_word_embeddings", False)))


def shape_for(model: str) -> Shape:
    """A size preset (``7b``, ``70b``, ...) or any model reference lmlab loads (its config only;
    an adapter run plans for its base)."""
    if model.lower() in SHAPES:
        return SHAPES[model.lower()]
    from lmlab.models import load_tokenizer, resolve
    from lmlab.models.load import model_folder
    from lmlab.models.registry import ALIASES

    r = resolve(model)
    if r.kind == "tiny":
        from lmlab.models.tiny import tiny_config

        return shape_from_config(tiny_config(r.path, load_tokenizer(model)))
    if r.kind == "adapter":
        return shape_for(r.base)
    from transformers import AutoConfig

    path = str(model_folder(ALIASES[r.ref])) if r.kind == "alias" else r.path
    return shape_from_config(AutoConfig.from_pretrained(path))
