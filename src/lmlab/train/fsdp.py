"""FSDP2 for the shared loop: PyTorch's ``fully_shard`` per transformer block, then the root.

Each block's parameters, gradients and AdamW state live sharded on dim 0 across the ranks (a
DTensor per parameter); a block's weights are all-gathered just before its forward and its
backward and freed after (ZeRO-3). Nothing here is home-made parallelism: this module only
decides *what* to shard, the policies (mixed precision, CPU offload), and turns the sharded
model back into a plain one when training ends, so every stage's ``final/`` save and
evaluation code stays unchanged.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from lmlab.errors import ConfigError


class ShardError(ConfigError):
    pass


def _inner(model: nn.Module) -> nn.Module:
    """The outermost transformers model inside ``model`` (under a peft wrapper or a reward /
    value head), or ``model`` itself."""
    from transformers import PreTrainedModel

    return next((m for m in model.modules() if isinstance(m, PreTrainedModel)), model)


def block_classes(model: nn.Module) -> set[str]:
    """Class names transformers marks as units that must not be split (its decoder blocks)."""
    names: set[str] = set()
    for m in model.modules():
        names.update(getattr(m, "_no_split_modules", None) or [])
    return names


def find_blocks(model: nn.Module) -> list[nn.Module]:
    """The model's transformer blocks, outermost first (a block inside a block is not listed)."""
    names = block_classes(model)
    found: list[nn.Module] = []
    for m in model.modules():
        if type(m).__name__ in names and not any(m in list(b.modules()) for b in found):
            found.append(m)
    return found


def check_shardable(model: nn.Module, world: int) -> list[nn.Module]:
    """The blocks to shard, or a ShardError that says what cannot be sharded and why."""
    name = type(_inner(model)).__name__
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False) \
            or getattr(_inner(model), "is_loaded_in_4bit", False) \
            or getattr(_inner(model), "is_loaded_in_8bit", False):
        raise ShardError("strategy=fsdp cannot shard a bitsandbytes-quantized base (method=qlora:"
                         " its packed 4/8-bit weights are not plain tensors FSDP can split); use "
                         "method=lora with strategy=fsdp, or method=qlora with strategy=ddp")
    odd = sorted({str(p.dtype) for p in model.parameters() if not p.dtype.is_floating_point})
    if odd:
        raise ShardError(f"strategy=fsdp cannot shard {name}: it holds non-float weights "
                         f"({', '.join(odd)}); use strategy=ddp")
    blocks = find_blocks(model)
    if not blocks:
        raise ShardError(f"strategy=fsdp cannot shard {name}: it names no transformer blocks "
                         f"(transformers' _no_split_modules is empty), so there is nothing to "
                         f"shard block by block; use strategy=ddp")
    if world > len(blocks):
        raise ShardError(f"strategy=fsdp with {world} ranks but {name} has only {len(blocks)} "
                         f"transformer blocks: each rank must own at least one block's shard "
                         f"to gain anything; use at most {len(blocks)} ranks or strategy=ddp")
    return blocks


def mixed_precision(device: torch.device, dtype: torch.dtype):
    """bf16/fp16 compute with fp32 gradient reduction on a GPU; plain fp32 on a CPU (bf16
    matmuls are 25-100x slower on an AVX2 CPU, see common.pick_dtype)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if device.type == "cuda" and dtype in (torch.bfloat16, torch.float16):
        return MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def shard(model: nn.Module, device: torch.device, dtype: torch.dtype, *,
          offload: bool = False, reshard_after_forward: bool = True) -> nn.Module:
    """``fully_shard`` each transformer block, then the root (embeddings, final norm and head,
    tied or not, form the root's group). In place; returns the model."""
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

    blocks = check_shardable(model, dist.get_world_size())
    kw = {"mp_policy": mixed_precision(device, dtype),
          "offload_policy": CPUOffloadPolicy() if offload else OffloadPolicy()}
    for b in blocks:
        fully_shard(b, reshard_after_forward=reshard_after_forward, **kw)
    fully_shard(model, **kw)
    return model


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def unshard(model: nn.Module) -> None:
    """Make a sharded model plain again, on every rank: gather the full weights (a collective),
    drop FSDP's hooks and class, and put ordinary parameters back (tied weights stay tied).
    After this, rank 0 can ``save_pretrained`` and evaluate alone."""
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    full: dict[int, nn.Parameter] = {}
    for m in model.modules():
        for name, p in list(m._parameters.items()):
            if p is None or not isinstance(p, DTensor):
                continue
            if id(p) not in full:
                full[id(p)] = nn.Parameter(p.detach().full_tensor().clone(),
                                           requires_grad=p.requires_grad)
            m._parameters[name] = full[id(p)]
    for m in model.modules():
        if isinstance(m, FSDPModule):
            state = m._get_fsdp_state()
            for h in {state._pre_forward_hook_handle, state._post_forward_hook_handle}:
                h.remove()
            m.__class__ = next(c for c in type(m).__bases__ if c is not FSDPModule)


def set_gradient_sync(model: nn.Module, sync: bool) -> None:
    """FSDP's no_sync: skip the reduce-scatter on all but the last micro-batch."""
    if is_sharded(model):
        model.set_requires_gradient_sync(sync)


def enable_activation_checkpointing(model: nn.Module) -> None:
    """Recompute each transformer block's activations in backward instead of storing them
    (non-reentrant torch.utils.checkpoint per block, through transformers' own switch)."""
    inner = _inner(model)
    if not getattr(inner, "supports_gradient_checkpointing", False):
        raise ShardError(f"activation_checkpointing=true: {type(inner).__name__} does not "
                         f"support gradient checkpointing")
    inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(inner, "config"):
        inner.config.use_cache = False


def prepare_model(model: nn.Module, cfg, device: torch.device, dtype: torch.dtype) -> bool:
    """Apply the config's activation checkpointing and, for ``strategy=fsdp``, shard the model
    (joining a one-rank process group when not launched by torchrun, so one process runs the
    same sharded code and writes the same reshardable checkpoints). True when sharded."""
    if getattr(cfg, "activation_checkpointing", False):
        enable_activation_checkpointing(model)
    if getattr(cfg, "strategy", "ddp") != "fsdp":
        return False
    check_shardable(model, dist.get_world_size() if dist.is_initialized() else 1)
    if not dist.is_initialized():
        _join_alone(device)
    shard(model, device, dtype, offload=getattr(cfg, "fsdp_offload", False),
          reshard_after_forward=getattr(cfg, "fsdp_reshard", True))
    return True


def release_model(model: nn.Module, sharded: bool) -> None:
    """After training: a plain model on every rank; the one-rank group is left again."""
    if not sharded:
        return
    unshard(model)
    leave_alone()


def leave_alone() -> None:
    """Close the one-rank group ``_join_alone`` opened (nothing otherwise)."""
    global _ALONE
    if _ALONE and dist.is_initialized():
        dist.destroy_process_group()
    _ALONE = False


_ALONE = False  # True while the one-rank group _join_alone made is open


def _join_alone(device: torch.device) -> None:
    global _ALONE
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    _ALONE = True
