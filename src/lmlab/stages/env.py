"""`lmlab env`: the hardware probe's table for this machine (lmlab.hardware).

Prints the CPU (or GPU) model, its feature flags, matmul GFLOP/s for fp32, bf16, fp16 and int8
at 135M-model shapes, memory read bandwidth, and what ``dtype=auto`` picks for training here.
The first call measures (a few seconds); later calls read the cached table.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmlab.config import opt

HELP = "the hardware probe: matmul GFLOP/s per dtype, memory bandwidth, what dtype=auto picks"


@dataclass
class Config:
    refresh: bool = opt(False, "measure again instead of reading the cached table")
    threads: int = opt(0, "torch threads to measure with (0 = torch's current count)", min=0)
    device: str = opt("cpu", "cpu | cuda | cuda:N")
    output: str = opt("", "also write the table as JSON to this file")


def run(cfg: Config) -> dict:
    import json
    from pathlib import Path

    import torch

    from lmlab.common import AUTOCAST_MIN_WIDTH, decide_auto, probe_table
    from lmlab.hardware import format_table
    from lmlab.openmp import describe as describe_waits

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        from lmlab.errors import ConfigError

        raise ConfigError("device: cuda is not available here (a CPU build of torch, or no GPU)")
    table = probe_table(device, refresh=cfg.refresh)
    choice = decide_auto(device, table)
    for line in format_table(table):
        print(line)
    print(describe_waits())
    print(f"\ndtype=auto for training: {choice.label} ({choice.reason})")
    if choice.autocast and device.type == "cpu":
        print(f"  (sft, reward, dpo, pretrain on models >= {AUTOCAST_MIN_WIDTH} wide, and "
              f"compile=true (pretrain, sft, dpo, reward) at any width; fp32 otherwise: "
              f"docs/hardware.md)")
    if cfg.output:
        Path(cfg.output).write_text(json.dumps({**table, "auto": choice.label,
                                                "auto_reason": choice.reason}, indent=1))
    return {**table, "auto": choice.label, "auto_reason": choice.reason}
