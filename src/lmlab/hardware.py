"""The hardware probe: what this machine's matmuls and memory deliver, per dtype.

On first use it times fp32, bf16, fp16 and int8 matmuls at the shapes a 135M model trains and
decodes with, and the memory read bandwidth (``read_bandwidth``: passes over a buffer far
larger than the caches), with the current torch thread count; a few seconds. The table is
cached as JSON per CPU (or GPU) model, torch version, thread count and device, so every later
run reads it.
``lmlab.common.resolve_precision`` decides ``dtype=auto`` from it and the training loop divides
by its matmul rate for MFU; ``lmlab env`` prints it.

A leaf: nothing of lmlab but its errors is imported (the cache folder is an argument), except
``lmlab.infer.native``'s read kernel, imported when the bandwidth is measured.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from pathlib import Path

import torch

# CPU features that decide what half precision and int8 cost (Linux /proc/cpuinfo names):
# avx512_bf16 = bf16 dot products, amx_* = the tile units (16x32 bf16 / int8 tiles),
# avx512_vnni = int8 dot products
FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_tile",
         "amx_bf16", "amx_int8")
DTYPES = ("fp32", "bf16", "fp16", "int8")
# (M, K, N): 512 tokens through SmolLM2-135M's attention projection (576 -> 576) and its MLP
# (576 -> 1536); a 1024 cube for comparison with published numbers
SHAPES = ((512, 576, 576), (512, 576, 1536), (1024, 1024, 1024))
GPU_SHAPES = ((4096, 4096, 4096),)  # a GPU reaches its peak only on large products
BUDGET_S = 0.06  # timing per shape and dtype after one warm-up product
SLOW_S = 0.3  # a warm-up product slower than this: the dtype is emulated; skip larger shapes
BANDWIDTH_MB = 256  # bytes read per pass: far beyond any L3
# bump when what is measured changes: older cache files are measured again (2: the read
# bandwidth is the C streaming read's, where the native library builds, not a torch sum's)
VERSION = 2

_TORCH = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_model() -> str:
    """The CPU's model name ('Intel(R) Xeon(R) Platinum 8481C', 'AMD EPYC 7B13'), else the
    platform's best guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def cpu_flags(cpuinfo: str | None = None) -> list[str]:
    """Which of ``FLAGS`` this CPU reports (from /proc/cpuinfo text; [] where there is none)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return []
    have: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            have.update(line.split(":", 1)[1].split())
            break
    return [f for f in FLAGS if f in have]


def device_model(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def kernel_isa() -> str:
    """The instruction set torch's CPU kernels were limited to, when it was: ATEN_CPU_CAPABILITY
    (torch's own kernels) and ONEDNN_MAX_CPU_ISA (oneDNN's bf16/int8 matmuls) change the rates
    on the same CPU; '' when neither is set."""
    parts = [f"{v}={os.environ[v]}" for v in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")
             if os.environ.get(v)]
    return ",".join(parts)


def probe_key(model: str, torch_version: str, threads: int, device: str = "cpu",
              isa: str = "") -> str:
    """The cache file's name: one table per device model, torch version, threads, device and
    kernel limit (``kernel_isa``)."""
    text = f"{device}-{model}-torch{torch_version}-t{threads}{'-' + isa if isa else ''}-v{VERSION}"
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_")


def probe(cache: str | Path | None, *, device: str | torch.device = "cpu", refresh: bool = False,
          measure=None) -> dict:
    """The probe table for this machine: read from ``cache``/hardware/<key>.json, else measured
    (``measure(device)``, default ``measure_table``) and written there. ``cache`` None: measure,
    keep nothing."""
    device = torch.device(device)
    key = probe_key(device_model(device), torch.__version__, torch.get_num_threads(),
                    device.type, kernel_isa() if device.type == "cpu" else "")
    path = Path(cache) / "hardware" / f"{key}.json" if cache is not None else None
    if path is not None and path.is_file() and not refresh:
        try:
            table = json.loads(path.read_text())
            if table.get("key") == key:
                return {**table, "cached": str(path)}
        except (OSError, ValueError):
            pass  # a damaged file is measured again and replaced
    table = {"key": key, **(measure or measure_table)(device)}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # two processes probing at once: atomic
        tmp.write_text(json.dumps(table, indent=1))
        os.replace(tmp, path)
    return {**table, "cached": None}


def measure_table(device: torch.device) -> dict:
    """Measure now: matmul GFLOP/s per dtype and shape, read bandwidth, CPU flags."""
    t0 = time.perf_counter()
    matmul = {dt: _matmul_row(dt, device) for dt in DTYPES}
    return {"device": device.type, "model": device_model(device), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "flags": cpu_flags(),
            "capability": torch.backends.cpu.get_cpu_capability(),
            "matmul": matmul, **read_bandwidth(BANDWIDTH_MB * 2**20, device),
            "probe_s": round(time.perf_counter() - t0, 2)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(fn, flops: float, device: torch.device) -> tuple[float, float]:
    """(GFLOP/s, seconds of the warm-up call): one warm-up call, then calls until BUDGET_S; the
    rate of the fastest call (other processes on a shared machine only ever slow a call down)."""
    t = time.perf_counter()
    fn()
    _sync(device)
    first = time.perf_counter() - t
    if first > SLOW_S:
        return flops / first / 1e9, first
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < BUDGET_S:
        t = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return flops / best / 1e9, first


def _operands(dtype: str, m: int, k: int, n: int, device: torch.device):
    """The product to time, or None where this torch has no such matmul here."""
    g = torch.Generator().manual_seed(0)
    if dtype == "int8":
        if not hasattr(torch, "_int_mm"):
            return None
        a = torch.randint(-128, 128, (m, k), generator=g, dtype=torch.int8).to(device)
        b = torch.randint(-128, 128, (k, n), generator=g, dtype=torch.int8).to(device)
        return lambda: torch._int_mm(a, b)
    a = torch.randn(m, k, generator=g).to(device, _TORCH[dtype])
    b = torch.randn(k, n, generator=g).to(device, _TORCH[dtype])
    return lambda: a @ b


def _matmul_row(dtype: str, device: torch.device) -> dict:
    """{"gflops": the best rate over the shapes, "shapes": {"MxKxN": GFLOP/s | why not}}."""
    shapes: dict[str, float | str] = {}
    slow = False
    for m, k, n in SHAPES + (GPU_SHAPES if device.type == "cuda" else ()):
        name = f"{m}x{k}x{n}"
        if slow:
            shapes[name] = "skipped (slow)"
            continue
        try:
            fn = _operands(dtype, m, k, n, device)
            if fn is None:
                shapes[name] = "unsupported"
                continue
            rate, first = _rate(fn, 2.0 * m * k * n, device)
        except RuntimeError as e:  # no kernel for this dtype on this device
            shapes[name] = f"unsupported ({str(e).splitlines()[0][:80]})"
            continue
        shapes[name] = round(rate, 1)
        slow = first > SLOW_S
    rates = [v for v in shapes.values() if isinstance(v, float)]
    return {"gflops": max(rates) if rates else None, "shapes": shapes}


def read_bandwidth(nbytes: int, device: str | torch.device = "cpu") -> dict:
    """Memory read bandwidth, GB/s, over a buffer of ``nbytes``: ``bandwidth_gbs`` (the figure
    decoding bounds use), ``bandwidth_method`` (what gave it) and each method's figure.

    On a CPU, two readers with the current torch thread count, best of 4 passes each: the
    native library's streaming read (``native.read_gbs``: the decode step's own way of reading
    weights, from a huge-page buffer) and a torch ``sum``. The faster one is the figure: a
    torch sum alone is no full-speed streaming read (Intel Xeon, 2 threads, 2026-12-07: 22.0
    GB/s, while the fp32 decode step read its 538 MB at 28 GB/s, "128% of the bound"). Without
    a C compiler (or ``LMLAB_NATIVE=0``) only the sum is measured."""
    device = torch.device(device)
    out: dict = {}
    if device.type == "cpu":
        try:
            from lmlab.infer import native

            c = native.read_gbs(nbytes, torch.get_num_threads())
        except (ImportError, OSError, RuntimeError) as e:  # a broken build: the sum alone
            c, out["bandwidth_c_read_error"] = None, str(e).splitlines()[0][:120]
        if c is not None:
            out["bandwidth_c_read_gbs"] = round(c, 2)
    out["bandwidth_sum_gbs"] = round(_sum_bandwidth(nbytes, device), 2)
    c = out.get("bandwidth_c_read_gbs", 0.0)
    method = "C streaming read" if c > out["bandwidth_sum_gbs"] else "torch sum"
    return {"bandwidth_gbs": max(c, out["bandwidth_sum_gbs"]), "bandwidth_method": method,
            **out}


def decode_bound(bandwidth_gbs: float, weight_bytes: float, batch: int = 1) -> float:
    """Tokens/s a decode step cannot beat when it reads ``weight_bytes`` of weights per step
    for ``batch`` sequences at ``bandwidth_gbs``: batch x bandwidth / bytes per step."""
    return batch * bandwidth_gbs * 1e9 / weight_bytes


def _sum_bandwidth(nbytes: int, device: torch.device) -> float:
    """GB/s of a torch ``sum`` over one fp32 tensor of ``nbytes`` (best of 4)."""
    x = torch.ones(max(1, nbytes // 4), device=device)
    x.sum()
    _sync(device)
    best = float("inf")
    for _ in range(4):
        t = time.perf_counter()
        x.sum()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return x.numel() * 4 / best / 1e9


# ----------------------------------------------------------------------------- reading a table


def matmul_gflops(table: dict, dtype: str) -> float | None:
    """The table's best matmul rate for ``dtype`` (fp32 | bf16 | fp16 | int8), None if none."""
    row = table.get("matmul", {}).get(dtype) or {}
    return row.get("gflops")


def speedup(table: dict, dtype: str, over: str = "fp32") -> float | None:
    a, b = matmul_gflops(table, dtype), matmul_gflops(table, over)
    return a / b if a and b else None


def format_table(table: dict) -> list[str]:
    """The probe as text lines: machine, flags, a matmul row per dtype, bandwidth."""
    lines = [f"device     {table.get('device', '?')}: {table.get('model', '?')}",
             (f"torch      {table.get('torch', '?')}, {table.get('threads', '?')} threads, "
              f"CPU capability {table.get('capability', '?')}"),
             f"flags      {' '.join(table.get('flags') or []) or '(none known)'}",
             ""]
    names = [f"{m}x{k}x{n}" for m, k, n in SHAPES + (GPU_SHAPES if table.get("device") == "cuda"
                                                      else ())]
    lines.append("matmul GFLOP/s  " + "".join(f"{n:>16}" for n in names) + f"{'best':>10}"
                 + f"{'vs fp32':>9}")
    for dt in DTYPES:
        row = table.get("matmul", {}).get(dt, {})
        cells = []
        for n in names:
            v = row.get("shapes", {}).get(n, "-")
            cells.append(f"{v:>16.1f}" if isinstance(v, float) else f"{str(v)[:15]:>16}")
        best = row.get("gflops")
        ratio = speedup(table, dt)
        lines.append(f"  {dt:<13}" + "".join(cells)
                     + (f"{best:>10.1f}" if best else f"{'-':>10}")
                     + (f"{ratio:>8.2f}x" if ratio else f"{'-':>9}"))
    how = table.get("bandwidth_method", "torch sum")
    others = [f"{name} {table[k]} GB/s" for k, name in (("bandwidth_c_read_gbs", "C read"),
                                                         ("bandwidth_sum_gbs", "torch sum"))
              if k in table]
    lines += ["", (f"memory read bandwidth  {table.get('bandwidth_gbs', '?')} GB/s"
                   f" ({BANDWIDTH_MB} MB, {how}{'; ' + ', '.join(others) if others else ''})"),
              f"probe took {table.get('probe_s', '?')} s"
              + (f"; cached in {table['cached']}" if table.get("cached") else "")]
    return lines
