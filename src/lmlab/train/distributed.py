"""torchrun / accelerate launch support: one process per device, gloo on CPU, nccl on GPU."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_distributed(device: torch.device) -> bool:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend)
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def all_reduce_sum(value: float | int, device: torch.device) -> float:
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())


def global_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (N,) over the rows of every rank (each rank may hold a different N);
    the local mean when not distributed. No gradient flows through the reduction."""
    if not (dist.is_available() and dist.is_initialized()):
        return values.mean()
    t = torch.stack([values.detach().sum().double(), torch.tensor(float(values.numel()),
                                                                  dtype=torch.float64,
                                                                  device=values.device)])
    dist.all_reduce(t)
    return (t[0] / t[1]).to(values.dtype)


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    if not (dist.is_available() and dist.is_initialized()):
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index or 0] if device.type == "cuda" else None
    return DDP(model, device_ids=ids)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
