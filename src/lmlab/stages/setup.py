"""What every training stage does before its own setup: check the model reference, pick the
device and dtype, join the process group, open the run folder, seed."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lmlab.runs import Run


@dataclass
class StageContext:
    run: Run
    device: torch.device
    dtype: torch.dtype  # the compute dtype
    autocast: bool = False  # fp32 master weights, compute under autocast (dtype=auto on a CPU)
    dtype_reason: str = ""  # why this precision (printed, and in config.yaml's resolved:)

    @property
    def weights_dtype(self) -> torch.dtype:
        """The dtype trained weights are held in. On a GPU, bf16/fp16 mean mixed precision:
        fp32 master weights and optimizer state, half-precision compute under autocast (pure
        fp16 weights cannot be unscaled by the GradScaler, pure bf16 loses small updates).
        On a CPU, an explicit bf16/fp16 means weights in that dtype; dtype=auto's bf16 means
        autocast over fp32 weights, as on a GPU."""
        if self.autocast or (self.device.type == "cuda"
                             and self.dtype in (torch.bfloat16, torch.float16)):
            return torch.float32
        return self.dtype


# Stages whose trained weights follow ``StageContext.weights_dtype``: there dtype=auto may pick
# bf16 autocast over fp32 weights on a CPU. The others (distill, grpo, ppo) load their trained
# model in the compute dtype, where bf16 would mean bf16 master weights, so auto keeps fp32.
CPU_AUTOCAST = ("sft", "reward", "dpo", "pretrain")


def start_stage(cfg, stage: str, *, check_model: bool = True) -> StageContext:
    from lmlab.common import (
        pick_device,
        print0,
        rank,
        resolve_precision,
        seed_everything,
        world_size,
    )
    from lmlab.models import resolve
    from lmlab.runs import prepare_run
    from lmlab.train.distributed import init_distributed

    if check_model:  # an unknown model fails before anything is written
        resolve(cfg.model)
    device = pick_device(cfg.device)
    if world_size() > 1 and device.type == "cuda":
        device = torch.device("cuda", rank() % torch.cuda.device_count())
    init_distributed(device)
    autocast_ok = stage in CPU_AUTOCAST
    width = model_width(cfg) if cfg.dtype == "auto" and autocast_ok and device.type == "cpu" \
        else None
    prec = resolve_precision(cfg.dtype, device, autocast_ok=autocast_ok, width=width,
                             compiled=bool(getattr(cfg, "compile", False)))
    print0(f"[lmlab] dtype {cfg.dtype} -> {prec.label}: {prec.reason}")
    run = prepare_run(cfg, stage, resolved={"dtype": prec.label, "dtype_reason": prec.reason})
    seed_everything(cfg.seed)
    return StageContext(run=run, device=device, dtype=prec.dtype, autocast=prec.autocast,
                        dtype_reason=prec.reason)


def model_width(cfg) -> int | None:
    """The hidden width of the model a stage will train, from its config alone (a scratch
    preset's size, or the reference's config); None when it cannot be told."""
    try:
        if getattr(cfg, "model", "") == "scratch":
            from lmlab.models.scratch_presets import size

            return size(cfg.preset, layers=cfg.layers, heads=cfg.heads, width=cfg.width,
                        context=cfg.context).width
        from lmlab.plan import shape_for

        return shape_for(cfg.model).hidden
    except Exception:  # noqa: BLE001 - unknown width: the probe alone decides
        return None


def eval_task_names(cfg) -> list[str]:
    """``eval_tasks`` if set, else the built-in tasks named by ``data=task:...``."""
    if cfg.eval_tasks or not cfg.data.startswith("task:"):
        return list(cfg.eval_tasks)
    from lmlab.data.tasks import task_names
    from lmlab.data.tasks.cot import split_source

    names = split_source(cfg.data)[0]  # "task:add,sort?cot=1" -> add, sort
    return task_names() if "all" in names else names


def eval_cot(cfg) -> bool:
    """Whether ``data=task:...?cot=1`` trains on worked solutions, so the task eval asks for
    them too (show-your-work prompts, a longer budget, the final line scored)."""
    from lmlab.data.tasks.cot import split_source

    return cfg.data.startswith("task:") and split_source(cfg.data)[1].get("cot", False)
