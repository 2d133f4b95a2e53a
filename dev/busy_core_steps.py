"""SmolLM2-135M training steps (bf16 autocast, batch 4 x 64, fused AdamW) at torch's thread
count, seconds a step, for docs/hardware.md "A busy core". Run it under different OpenMP
waits, idle and with a busy process beside (libgomp reads GOMP_SPINCOUNT as torch loads):

    OMP_NUM_THREADS=2 .venv/bin/python dev/busy_core_steps.py                # one process
    OMP_NUM_THREADS=2 GOMP_SPINCOUNT=10000 .venv/bin/python dev/busy_core_steps.py
    (timeout 300 python3 -c 'while 1: pass' &); OMP_NUM_THREADS=2 .venv/bin/python \\
        dev/busy_core_steps.py --alternate 2    # 2 and 1 threads in turn, 2 rounds

Without ``--alternate``: one warm-up step, then the mean of ``--steps`` steps. With it: each
round runs one warm-up and 3 timed steps at 2 threads, then at 1.
"""
import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch

from lmlab.models import load_model

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=4)
p.add_argument("--alternate", type=int, default=0, help="rounds of 2 vs 1 thread (0: off)")
args = p.parse_args()
model = load_model("smollm2-135m-instruct", dtype=torch.float32).train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
ids = torch.randint(0, 49152, (4, 64), generator=torch.Generator().manual_seed(0))


def step():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def timed(n: int) -> float:
    step()
    t = time.perf_counter()
    for _ in range(n):
        step()
    return round((time.perf_counter() - t) / n, 3)


if not args.alternate:
    print(timed(args.steps))
else:
    res = {2: [], 1: []}
    for _ in range(args.alternate):
        for nt in (2, 1):
            torch.set_num_threads(nt)
            res[nt].append(timed(3))
    print("s/step 2 threads", res[2])
    print("s/step 1 thread", res[1])
