"""Metric loggers behind one small protocol; jsonl is always on, the rest are optional."""

from __future__ import annotations

from typing import Protocol

from lmlab.errors import UserError


class MetricLogger(Protocol):
    def log(self, metrics: dict, step: int) -> None: ...

    def close(self) -> None: ...


class NullLogger:
    def log(self, metrics: dict, step: int) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardLogger:
    def __init__(self, folder: str):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise UserError("loggers=tensorboard needs `pip install tensorboard`") from e
        self.writer = SummaryWriter(folder)

    def log(self, metrics: dict, step: int) -> None:
        for k, v in metrics.items():
            if isinstance(v, (int, float)):
                self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    def __init__(self, folder: str, config: dict):
        try:
            import wandb
        except ImportError as e:
            raise UserError("loggers=wandb needs `pip install wandb`") from e
        self.run = wandb.init(dir=folder, config=config, project="lmlab")

    def log(self, metrics: dict, step: int) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


def build_loggers(names: list[str], folder: str, config: dict) -> list[MetricLogger]:
    out: list[MetricLogger] = []
    for name in names:
        if name == "tensorboard":
            out.append(TensorBoardLogger(folder))
        elif name == "wandb":
            out.append(WandbLogger(folder, config))
        else:
            raise UserError(f"loggers: unknown logger '{name}' (known: tensorboard, wandb)")
    return out


def format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def step_line(step: int, total: int, m: dict, eta: float) -> str:
    """One dense line: step, loss, lr, grad norm, tok/s, MFU, memory, ETA."""
    parts = [f"step {step}/{total}", f"loss {m.get('train/loss', float('nan')):.4f}",
             f"lr {m.get('train/lr', 0):.2e}"]
    if "train/grad_norm" in m:
        parts.append(f"gnorm {m['train/grad_norm']:.2f}")
    rates = {k[len("train/"):-len("_per_s")]: v for k, v in m.items()
             if k.startswith("train/") and k.endswith("_per_s") and k != "train/tokens_per_s"}
    if m.get("train/tokens_per_s", 0) or not rates:
        parts.append(f"tok/s {m.get('train/tokens_per_s', 0):.0f}")
    parts += [f"{unit}/s {v:.0f}" for unit, v in rates.items()]
    if "train/mfu" in m:
        parts.append(f"mfu {100 * m['train/mfu']:.1f}%")
    if "train/mem_gb" in m:
        parts.append(f"mem {m['train/mem_gb']:.2f}G")
    parts.append(f"eta {format_duration(eta)}")
    return " | ".join(parts)
