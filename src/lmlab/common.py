"""Small shared helpers: cache dir, device and dtype choice, seeding, rank-0 printing."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


def cache_dir() -> Path:
    """Where converted models and other derived files live (``LMLAB_CACHE`` overrides)."""
    env = os.environ.get("LMLAB_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lmlab"


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
          "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
# dtype=auto trains under bf16 autocast on a CPU whose bf16 matmul is at least this much faster
# than its fp32 one (the probe's best rates); below it the casts cost what bf16 saves
BF16_MIN_SPEEDUP = 1.3
# ... and only for models at least this wide: below it the per-step casts cost more than the
# bf16 matmuls save (RESULTS.md: a 128-wide GPT trains at 0.76-0.80x fp32 under bf16 autocast
# on an AMX Xeon; SmolLM2-135M, 576 wide, at 1.6x in bf16). 256 lies between the two. A
# compiled model has no such floor: inductor fuses the casts into the elementwise kernels
# around each matmul (128 wide, Llama body, one thread of the AMX Xeon: compiled bf16 autocast
# 1.70x eager fp32 where compiled fp32 was 1.38x; eager bf16 ~0.8-1.2x).
AUTOCAST_MIN_WIDTH = 256


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` is fp32 on CPU (bf16 is ~25-100x slower on an AVX2-only CPU), bf16 on GPUs that
    support it, fp16 otherwise (T4). For inference; training stages use ``resolve_precision``."""
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if name not in DTYPES:
        from lmlab.errors import ConfigError

        raise ConfigError(f"dtype: '{name}' is not one of auto, fp32, bf16, fp16")
    return DTYPES[name]


@dataclass(frozen=True)
class Precision:
    """How a training stage computes: ``dtype`` is the compute dtype; ``autocast`` means fp32
    master weights (and optimizer state, losses, reductions) with matmuls under autocast."""

    dtype: torch.dtype
    autocast: bool
    reason: str

    @property
    def label(self) -> str:
        name = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]
        return f"{name} autocast" if self.autocast else name


def decide_auto(device: torch.device, table: dict | None) -> Precision:
    """``dtype=auto`` for training from a probe table (``lmlab.hardware``): on a CPU, bf16
    autocast where bf16 matmuls are >= BF16_MIN_SPEEDUP x fp32, else fp32; on a GPU bf16 (fp16
    where bf16 is missing) under autocast, as before."""
    if device.type == "cuda":
        half = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return Precision(half, True, "a GPU: half-precision autocast, fp32 master weights")
    if device.type != "cpu":
        return Precision(torch.float32, False, f"{device.type}: fp32")
    from lmlab.hardware import speedup

    ratio = speedup(table or {}, "bf16")
    where = f"{(table or {}).get('model', 'this CPU')}, {(table or {}).get('threads', '?')} threads"
    if ratio is None:
        return Precision(torch.float32, False, f"no bf16 matmul measured on {where}: fp32")
    if ratio >= BF16_MIN_SPEEDUP:
        return Precision(torch.bfloat16, True,
                         f"bf16 matmul {ratio:.1f}x fp32 on {where} (>= {BF16_MIN_SPEEDUP}x): "
                         f"bf16 autocast, fp32 master weights")
    return Precision(torch.float32, False, f"bf16 matmul only {ratio:.2f}x fp32 on {where} "
                     f"(< {BF16_MIN_SPEEDUP}x): fp32")


def probe_table(device: torch.device, *, refresh: bool = False) -> dict:
    """This machine's probe table (measured once, then read from the cache dir)."""
    from lmlab.hardware import probe

    return probe(cache_dir(), device=device, refresh=refresh)


def resolve_precision(name: str, device: torch.device, *, autocast_ok: bool = True,
                      width: int | None = None, compiled: bool = False,
                      table_fn=None) -> Precision:
    """A training stage's ``dtype`` key -> Precision. Explicit names keep their meaning (on a
    CPU, bf16/fp16 are the weights' dtype; on a GPU, autocast over fp32 weights). ``auto`` asks
    the probe (``table_fn(device)``); ``LMLAB_AUTO_DTYPE=fp32|bf16`` pins what auto means on a
    CPU (the test suite pins fp32, so its numbers do not depend on the CPU kind);
    ``autocast_ok=False`` (a stage that would hold bf16 weights) and a model ``width`` below
    AUTOCAST_MIN_WIDTH keep fp32 on a CPU, the width only when the model runs eagerly
    (``compiled=False``); the probe's bf16 rate decides in every case."""
    if name != "auto":
        dtype = pick_dtype(name, device)
        amp = device.type == "cuda" and dtype != torch.float32
        return Precision(dtype, amp, f"dtype={name}")
    if device.type != "cpu":
        return decide_auto(device, None)
    pinned = os.environ.get("LMLAB_AUTO_DTYPE", "")
    if pinned in ("fp32", "bf16"):
        bf16 = pinned == "bf16" and autocast_ok
        return Precision(torch.bfloat16 if bf16 else torch.float32, bf16,
                         f"LMLAB_AUTO_DTYPE={pinned} pins it")
    if not autocast_ok:
        return Precision(torch.float32, False, "this stage trains in fp32 on a CPU under auto")
    if width is not None and width < AUTOCAST_MIN_WIDTH and not compiled:
        return Precision(torch.float32, False, f"the model is {width} wide (< "
                         f"{AUTOCAST_MIN_WIDTH}): bf16 casts would cost more than they save")
    prec = decide_auto(device, (table_fn or probe_table)(device))
    if compiled and prec.autocast and width is not None and width < AUTOCAST_MIN_WIDTH:
        return Precision(prec.dtype, True, f"{prec.reason}; compiled, so at {width} wide too "
                         f"(the casts fuse into its kernels)")
    return prec


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float | None:
    """The probe's best matmul GFLOP/s for ``dtype`` on ``device`` (None if unmeasured)."""
    from lmlab.hardware import matmul_gflops

    name = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype)
    if name is None:
        return None
    try:
        return matmul_gflops(probe_table(device), name)
    except (OSError, RuntimeError, ValueError):  # no cache dir, no kernel: no MFU, no failure
        return None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def print0(*args, **kwargs) -> None:
    if is_main():
        print(*args, **kwargs, flush=True)
