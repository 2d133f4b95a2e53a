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

    @property
    def weights_dtype(self) -> torch.dtype:
        """The dtype trained weights are held in. On a GPU, bf16/fp16 mean mixed precision:
        fp32 master weights and optimizer state, half-precision compute under autocast (pure
        fp16 weights cannot be unscaled by the GradScaler, pure bf16 loses small updates).
        On a CPU there is no autocast: the weights are the compute dtype."""
        if self.device.type == "cuda" and self.dtype in (torch.bfloat16, torch.float16):
            return torch.float32
        return self.dtype


def start_stage(cfg, stage: str, *, check_model: bool = True) -> StageContext:
    from lmlab.common import pick_device, pick_dtype, rank, seed_everything, world_size
    from lmlab.models import resolve
    from lmlab.runs import prepare_run
    from lmlab.train.distributed import init_distributed

    if check_model:  # an unknown model fails before anything is written
        resolve(cfg.model)
    device = pick_device(cfg.device)
    if world_size() > 1 and device.type == "cuda":
        device = torch.device("cuda", rank() % torch.cuda.device_count())
    init_distributed(device)
    dtype = pick_dtype(cfg.dtype, device)
    run = prepare_run(cfg, stage)
    seed_everything(cfg.seed)
    return StageContext(run=run, device=device, dtype=dtype)


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
