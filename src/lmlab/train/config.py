"""Keys shared by every gradient stage (the loop's knobs), and ``compile=true``'s keys for the
stages that offer it (pretrain, sft, dpo, reward)."""

from __future__ import annotations

from dataclasses import dataclass

from lmlab.config import RunConfig, opt
from lmlab.models.compiling import SCOPES as COMPILE_SCOPES


@dataclass
class TrainConfig(RunConfig):
    lr: float = opt(2e-4, "peak learning rate", min=0.0, min_exclusive=True)
    schedule: str = opt("cosine", "learning-rate schedule after warmup",
                        choices=("constant", "linear", "cosine", "one-cycle"))
    warmup_steps: int = opt(5, "linear warmup steps", min=0)
    min_lr_ratio: float = opt(0.1, "final lr as a fraction of lr (linear, cosine)", min=0, max=1)
    weight_decay: float = opt(0.0, "AdamW weight decay (matrices only)", min=0)
    beta1: float = opt(0.9, "AdamW beta1", min=0, max=1)
    beta2: float = opt(0.999, "AdamW beta2", min=0, max=1)
    batch_size: int = opt(8, "micro-batch size (sequences per forward pass)", min=1)
    grad_accum: int = opt(1, "micro-batches per optimizer step", min=1)
    max_len: int = opt(256, "maximum tokens per sequence", min=8)
    clip_grad: float = opt(1.0, "clip the gradient norm to this (0 = off)", min=0)
    dtype: str = opt("auto", "compute dtype: auto = bf16 autocast over fp32 weights on a CPU "
                     "whose bf16 matmul is >= 1.3x fp32 (the hardware probe, `lmlab env`), "
                     "else fp32; bf16/fp16 autocast on GPU (docs/hardware.md)",
                     choices=("auto", "fp32", "bf16", "fp16"))
    device: str = opt("auto", "auto | cpu | cuda | cuda:N | mps")
    log_every: int = opt(1, "steps between log lines / metrics.jsonl rows", min=1)
    eval_every: int = opt(0, "steps between evaluations (0 = only at the end)", min=0)
    save_every: int = opt(50, "steps between checkpoints (0 = only at the end)", min=0)
    keep_checkpoints: int = opt(2, "how many recent checkpoints to keep", min=1)
    loggers: list[str] = opt([], "extra metric loggers: tensorboard, wandb (jsonl is always on)")
    progress: bool = opt(True, "show a progress bar")
    strategy: str = opt("ddp", "multi-process training: ddp = every rank holds the whole model; "
                        "fsdp = parameters, gradients and optimizer state sharded per "
                        "transformer block (FSDP2, ZeRO-3); see docs/scale.md",
                        choices=("ddp", "fsdp"))
    fsdp_offload: bool = opt(False, "fsdp: keep the sharded parameters, gradients and optimizer "
                             "state in CPU memory (CPUOffloadPolicy); for GPUs")
    fsdp_reshard: bool = opt(True, "fsdp: free each block's gathered weights after its forward "
                             "(less memory, one more all-gather in backward)")
    activation_checkpointing: bool = opt(False, "recompute each transformer block's "
                                         "activations in backward instead of storing them")


@dataclass
class CompileOptions:
    """``compile=true``: the stage compiles its trained model in place right before the loop
    (``lmlab.models.compiling.compiled_for_training``); evals, samples and the save run eager."""

    compile: bool = opt(False, "torch.compile for training (inductor; the first step compiles); "
                               "under dtype=auto on a CPU with fast bf16 it trains in bf16 "
                               "autocast at any width")
    compile_scope: str = opt("model", "compile=true: model (the whole forward) or blocks "
                                      "(each repeated layer, compiled once and reused: "
                                      "less tracing, slower steps)", choices=COMPILE_SCOPES)
