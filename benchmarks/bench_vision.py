"""Vision training throughput: `lmlab vision` vs a plain PyTorch script, same model and batch.

Both sides train the same architecture (lmlab.vision.models, so the FLOPs are equal) on the same
normalised Fashion-MNIST tensors with AdamW + one-cycle, label smoothing 0.1 and random flips,
batch ``--batch``. The reference is the usual script, in fp32: a ``DataLoader`` over a
``TensorDataset`` (shuffle, drop_last, ``--workers`` worker processes), the flip done on each
batch, ``OneCycleLR``, zero_grad / forward / backward / step. `lmlab vision` runs once per
``--dtypes`` entry: ``fp32`` (the loop against the loop) and ``auto`` (what a user gets by
default: bf16 autocast + channels-last where the hardware probe finds fast bf16, e.g. AMX; fp32
elsewhere). Two rows, two ratios, both over the same fp32 reference; ``auto`` is the headline
(the default a user runs), ``fp32`` shows what the loop and data path alone give.
Images/s = images of the timed steps (after ``--warmup``) / their seconds. Holds
/tmp/lmlab-heavy.lock while it runs.

    .venv/bin/python benchmarks/bench_vision.py --steps 300 --warmup 30 --batch 256
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

LOCK = "/tmp/lmlab-heavy.lock"


@contextlib.contextmanager
def heavy_lock(enabled: bool = True):
    """Wait for /tmp/lmlab-heavy.lock so no other heavy run shares the machine (off for the
    smoke tests, whose timings mean nothing)."""
    if not enabled:
        yield
        return
    with open(LOCK, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[bench] waiting for {LOCK} (another heavy run holds it)", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def bench_lmlab(args, out: Path, dtype: str) -> dict:
    from lmlab.config import load_config
    from lmlab.stages import vision

    cfg = load_config(vision.Config, None, [
        f"model={args.model}", f"data={args.data}", f"output_dir={out}", f"device={args.device}",
        f"dtype={dtype}", f"widths={args.widths}", f"depths={args.depths}",
        f"max_steps={args.steps}", f"batch_size={args.batch}", "lr=0.004", "schedule=one-cycle",
        "label_smoothing=0.1", "flip=true", "weight_decay=0.05", "log_every=1", "save_every=0",
        "progress=false", "probe_every=0", "insight=false", "flops_table=false",
        f"channels_last={str(args.channels_last).lower()}", "overwrite=true", "seed=0",
        *([f"data_limit={args.limit}"] if args.limit else [])])
    summary = vision.run(cfg)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    timed = rows[args.warmup:]
    secs = sum(r["train/step_s"] for r in timed)
    return {"images_per_s": len(timed) * args.batch / secs, "step_s": secs / len(timed),
            "final_loss": rows[-1]["train/loss"], "test_accuracy": summary["test_accuracy"],
            "dtype": dtype, "precision": summary["precision"]
            + (", channels-last" if summary["channels_last"] else "")}


def bench_reference(args) -> dict:
    """The plain script: DataLoader over the same tensors, the usual loop."""
    from torch.utils.data import DataLoader, TensorDataset

    from lmlab.vision.data import channel_stats, load_source, normalise
    from lmlab.vision.models import build_model

    torch.manual_seed(0)
    train = load_source(args.data, "train")
    x, y = train.x, train.y
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]
    mean, std = channel_stats(x)
    x = normalise(x, mean, std)
    device = torch.device(args.device)
    model = build_model(args.model, in_channels=x.shape[1], n_classes=len(train.classes),
                        image_size=x.shape[-1], widths=json.loads(args.widths),
                        depth=json.loads(args.depths) or 1).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loader = DataLoader(TensorDataset(x, y), batch_size=args.batch, shuffle=True,
                        drop_last=True, num_workers=args.workers)
    opt = torch.optim.AdamW(model.parameters(), lr=0.004, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.004, total_steps=args.steps)
    times, step, loss = [], 0, None
    while step < args.steps:
        t0 = time.time()
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            flip = torch.rand(len(xb), device=device) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            if args.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(xb), yb, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.time() - t0)
            step += 1
            t0 = time.time()
            if step >= args.steps:
                break
    timed = times[args.warmup:]
    return {"images_per_s": len(timed) * args.batch / sum(timed),
            "step_s": sum(timed) / len(timed), "final_loss": loss.item()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="cnn")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--limit", type=int, default=0, help="training images (0 = all)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--workers", type=int, default=0, help="reference DataLoader workers")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--widths", default="[32,64,128]", help="model=cnn: widths (both sides)")
    p.add_argument("--depths", default="[]", help="model=cnn: blocks per stage ([] = 1 each)")
    p.add_argument("--dtypes", nargs="+", default=["fp32", "auto"], choices=["fp32", "auto"],
                   help="lmlab sides: dtype=fp32 and/or dtype=auto (the reference is fp32)")
    p.add_argument("--sides", nargs="+", default=["lmlab", "reference"],
                   choices=["lmlab", "reference"])
    p.add_argument("--no-lock", action="store_true", help="don't wait for the heavy-run lock "
                   "(smoke runs only: timings beside other work mean nothing)")
    p.add_argument("--out", default="benchmarks/results/vision.json")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {}
    with heavy_lock(not args.no_lock), tempfile.TemporaryDirectory() as tmp:
        if "lmlab" in args.sides:
            for dt in args.dtypes:
                results[f"lmlab_{dt}"] = bench_lmlab(args, Path(tmp) / f"lmlab-{dt}", dt)
        if "reference" in args.sides:
            results["reference"] = bench_reference(args)
    if "reference" in results:
        for dt in args.dtypes:
            if f"lmlab_{dt}" in results:
                results[f"speedup_{dt}"] = results[f"lmlab_{dt}"]["images_per_s"] / \
                    results["reference"]["images_per_s"]
    env = {"python": sys.version.split()[0], "torch": torch.__version__,
           "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
           "capability": torch.backends.cpu.get_cpu_capability(), "cores": os.cpu_count(),
           "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "env": env, "results": results},
                                         indent=2) + "\n")
    print("| side | precision | images/s | s/step | final loss | vs reference |")
    print("|---|---|---|---|---|---|")
    for dt in args.dtypes:
        if f"lmlab_{dt}" in results:
            r = results[f"lmlab_{dt}"]
            ratio = results.get(f"speedup_{dt}")
            print(f"| lmlab dtype={dt} | {r['precision']} | {r['images_per_s']:.0f} | "
                  f"{r['step_s']:.4f} | {r['final_loss']:.4f} | "
                  f"{f'{ratio:.2f}x' if ratio else '-'} |")
    if "reference" in results:
        r = results["reference"]
        print(f"| reference (DataLoader) | fp32 | {r['images_per_s']:.0f} | {r['step_s']:.4f} | "
              f"{r['final_loss']:.4f} | 1.00x |")
    if "speedup_auto" in results:
        print(f"headline (lmlab default dtype=auto vs the fp32 script): "
              f"{results['speedup_auto']:.2f}x")

if __name__ == "__main__":
    main()
