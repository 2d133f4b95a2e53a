"""bf16 (and fp32) matmuls at SmolLM2-135M's training shapes against the hardware probe's 1024^3
product: how far below the probe's rate a training step's products run, and whether a layout
helps. Per token count T and projection (K=576 -> N=576 / 1536 / 192, the MLP's down 1536 ->
576, LoRA's rank-16 pair), the three products of a linear layer in training:

    fwd   y = x W^T        (T, K) x (N, K)^T   as F.linear runs it (the weight transposed view)
    dgrad dx = dy W        (T, N) x (N, K)
    wgrad dW = dy^T x      (N, T)^T-view x (T, K)   as autograd runs it; ``wgrad_xt`` computes
                           x^T dy (K, N) and returns its transposed view, ``wgrad_ct`` makes dy^T
                           contiguous first (the copy timed)

and layouts of the forward: ``fwd_wt`` with W^T made contiguous once (a persistent packed-like
copy), ``fwd_fresh`` with the bf16 weight cast from fp32 at every call (what autocast does each
step, the cast timed too), ``fwd_buf`` with the weight copied into one persistent bf16 buffer
(``copy_``) before each call. Rounds interleave every variant (one product at a time, best
of the rounds), so a loaded machine shifts all alike; read ratios, not absolute rates.

    .venv/bin/python benchmarks/bench_matmul_shapes.py --threads 1
    .venv/bin/python benchmarks/bench_matmul_shapes.py --tokens 64 --rounds 2 --budget 0.01  # smoke
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

PROJ = {"qo": (576, 576), "mlp-up": (576, 1536), "kv": (576, 192), "mlp-down": (1536, 576),
        "lora-A": (576, 16), "lora-B": (16, 1536)}


def _timer(fn, budget: float) -> float:
    """Best seconds per call over ``budget`` seconds (one warm-up call)."""
    fn()
    best, spent = float("inf"), 0.0
    while spent < budget:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
    return best


def cases(t: int, k: int, n: int, dtype: torch.dtype) -> dict:
    """name -> (callable, flops) for one token count and projection."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(t, k, generator=g).to(dtype)
    w32 = torch.randn(n, k, generator=g) * 0.02
    w = w32.to(dtype)
    dy = torch.randn(t, n, generator=g).to(dtype)
    wt = w.t().contiguous()
    buf = torch.empty_like(w)
    f = 2.0 * t * k * n
    out = {"fwd": (lambda: torch.nn.functional.linear(x, w), f),
           "fwd_wt": (lambda: x @ wt, f),
           "dgrad": (lambda: dy @ w, f),
           "wgrad": (lambda: dy.t() @ x, f),
           "wgrad_xt": (lambda: (x.t() @ dy).t(), f),  # dW^T = x^T dy, returned as a view
           "wgrad_ct": (lambda: dy.t().contiguous() @ x, f)}  # dy^T made contiguous first
    if dtype != torch.float32:
        out["fwd_fresh"] = (lambda: torch.nn.functional.linear(x, w32.to(dtype)), f)
        out["fwd_buf"] = (lambda: torch.nn.functional.linear(x, buf.copy_(w32)), f)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokens", type=int, nargs="+", default=[592, 2048, 4096])
    p.add_argument("--proj", nargs="+", default=list(PROJ), choices=list(PROJ))
    p.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--budget", type=float, default=0.05, help="seconds per case and round")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results/matmul_shapes.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dt = {"bf16": torch.bfloat16, "fp32": torch.float32}
    table = {}
    for name in args.dtypes:  # the probe's product, this process, these threads
        a = torch.randn(1024, 1024).to(dt[name])
        table[(name, "probe", 1024, "1024^3")] = ((lambda a=a: a @ a), 2.0 * 1024 ** 3)
    for name in args.dtypes:
        for t in args.tokens:
            for proj in args.proj:
                for case, fn in cases(t, *PROJ[proj], dt[name]).items():
                    table[(name, proj, t, case)] = fn
    best: dict = {}
    for _ in range(args.rounds):  # interleaved: every case once per round
        for key, (fn, _f) in table.items():
            best[key] = min(best.get(key, float("inf")), _timer(fn, args.budget))
    rows = []
    for key, (_fn, flops) in table.items():
        name, proj, t, case = key
        rate = flops / best[key] / 1e9
        peak = flops and table[(name, "probe", 1024, "1024^3")][1] / best[
            (name, "probe", 1024, "1024^3")] / 1e9
        rows.append({"dtype": name, "proj": proj, "tokens": t, "case": case,
                     "gflops": round(rate, 1), "of_probe": round(rate / peak, 3)})
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| dtype | proj | T | case | GFLOP/s | of the 1024^3 rate |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dtype']} | {r['proj']} | {r['tokens']} | {r['case']} | {r['gflops']} "
              f"| {100 * r['of_probe']:.0f}% |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
