"""Stress the C decode step's row stealing: greedy logits at 2 threads against 1 thread, bit
for bit, for batches of 2-8 rows of the odd-sized test model at fp32 and bf16 (prefills of up
to 80 inputs through C, so bf16 runs its AMX groups where the CPU has tiles). A mismatch is
timing-dependent: run it several times on an idle machine. Session 23 saw batch-4/5 bf16
mismatch in about one run of three before the AMX groups met at a barrier under stealing
(native.c, steal_claim).

    OMP_NUM_THREADS=2 .venv/bin/python dev/native_steal_stress.py --runs 6
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmlab.infer import native
from tests.infer.test_native_threads import _logits
from tests.tiny import odd_llama


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    native.MAX_ROWS = 64  # every step through C, the prefill included
    model = odd_llama(1001, 100, hidden=96, positions=64, seed=0)
    g = torch.Generator().manual_seed(3)
    rows = [torch.randint(0, 1001, (n,), generator=g).tolist()
            for n in (9, 5, 11, 7, 6, 8, 10, 4)]
    bad = 0
    for run in range(args.runs):
        for weights in ("bf16", "fp32"):
            for k in (2, 3, 4, 5, 8):
                ref = _logits(model, rows[:k], weights, 1)
                got = _logits(model, rows[:k], weights, 2)
                if not torch.equal(got, ref):
                    bad += 1
                    print(f"run {run}: {weights} batch {k} differs "
                          f"(max {float((got - ref).abs().max()):.3g})", flush=True)
    print(f"{bad} mismatches in {args.runs} runs")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
