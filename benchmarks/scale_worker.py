"""One measured training process for bench_plan.py and bench_fsdp.py (alone or under torchrun).

    python benchmarks/scale_worker.py OUT_PREFIX MODEL STRATEGY CKPT SEQ BATCH STEPS

Each rank writes OUT_PREFIX.rank<R>.json: its peak memory over the steps (Linux VmHWM, reset
after the model is loaded, minus the resident size without the model: weights, gradients,
optimizer state, activations and whatever the allocator and the collectives keep), the bytes of
the parameters, gradients and AdamW state it holds itself (shards under fsdp), and step times.
Uses the loop's own pieces (fsdp.prepare_model, wrap_ddp, build_optimizer, LMObjective)."""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS


def _local_bytes(tensors) -> int:
    total = 0
    for t in tensors:
        t = t.to_local() if hasattr(t, "to_local") else t
        total += t.numel() * t.element_size()
    return total


def _batch(seq: int, batch: int, vocab: int, step: int) -> dict:
    g = torch.Generator().manual_seed(1000 + step * 17 + int(os.environ.get("RANK", "0")))
    ids = torch.randint(3, vocab, (batch, seq), generator=g)
    return {"input_ids": ids, "labels": ids.clone(),
            "attention_mask": torch.ones_like(ids)}


def _steps(model_ref, strategy, ckpt, seq, batch, steps, measure: bool) -> dict:
    from lmlab.common import world_size
    from lmlab.losses.objectives import LMObjective
    from lmlab.models import load_model
    from lmlab.train.config import TrainConfig
    from lmlab.train.distributed import wrap_ddp
    from lmlab.train.fsdp import prepare_model, release_model
    from lmlab.train.loop import build_optimizer

    # bench_fsdp.py --no-reshard: keep each block's gathered weights from forward to backward
    reshard = os.environ.get("LMLAB_BENCH_FSDP_RESHARD", "1") == "1"
    cfg = TrainConfig(model=model_ref, strategy=strategy, activation_checkpointing=ckpt,
                      fsdp_reshard=reshard, lr=1e-4)
    device = torch.device("cpu")
    model = load_model(model_ref)
    # a loaded model's tensors may sit in pages of the safetensors file that stay resident after
    # FSDP replaces them by shards: copy them into ordinary memory first, then count the
    # baseline as the resident size less the model's own bytes
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            t.data = t.data.clone()
    gc.collect()
    base = _status("VmRSS") - _local_bytes([*model.parameters(), *model.buffers()])
    if measure:
        _reset_peak()
    sharded = prepare_model(model, cfg, device, torch.float32)
    ddp = model if sharded or world_size() == 1 else wrap_ddp(model, device)
    model.train()
    opt = build_optimizer(model, cfg)
    objective, times = LMObjective(), []
    vocab = model.config.vocab_size if hasattr(model, "config") else 1000
    for i in range(steps):
        t0 = time.perf_counter()
        b = _batch(seq, batch, vocab, i)
        loss, _ = objective(ddp, b)
        (loss / objective.count(b)).backward()
        opt.step()
        held = {"parameters": _local_bytes(model.parameters()),
                "gradients": _local_bytes(p.grad for p in model.parameters()
                                          if p.grad is not None),
                "optimizer": _local_bytes(v for s in opt.state.values() for v in s.values()
                                          if torch.is_tensor(v) and v.dim() > 0)}
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    peak = _status("VmHWM") - base
    release_model(model, sharded)
    return {"peak_bytes": peak, "held": held, "step_s": times}


def main(prefix: str, model_ref: str, strategy: str, ckpt: str, seq: str, batch: str,
         steps: str) -> None:
    import torch.distributed as dist

    from lmlab.common import rank, world_size
    from lmlab.train.distributed import init_distributed

    init_distributed(torch.device("cpu"))
    # warm-up on the tiny model: loads the code paths (their pages count in RSS) before measuring
    _steps("tiny:llama", strategy, ckpt == "1", 8, 1, 1, measure=False)
    gc.collect()
    out = _steps(model_ref, strategy, ckpt == "1", int(seq), int(batch), int(steps), True)
    out.update(rank=rank(), world=world_size(), model=model_ref, strategy=strategy,
               checkpointing=ckpt == "1", seq=int(seq), batch=int(batch))
    Path(f"{prefix}.rank{rank()}.json").write_text(json.dumps(out))
    if dist.is_initialized():
        dist.barrier()


if __name__ == "__main__":
    main(*sys.argv[1:8])
