"""Serving: concurrent streaming clients against `lmlab serve` vs sequential HF `generate`
(and vs `transformers serve` when it runs here). On demand, not a test.

    .venv/bin/python benchmarks/bench_serve.py                        # 1/4/16/64 clients
    .venv/bin/python benchmarks/bench_serve.py --levels 1 16 --peers none

A thin command line over ``lmlab.serve.bench`` (what it measures and how is described there),
the same code as ``lmlab bench serve``, which writes a run folder instead of ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from lmlab.serve.bench import PEERS, Settings, run_all

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--levels", type=int, nargs="*", default=[1, 4, 16, 64])
    ap.add_argument("--requests", type=int, default=16,
                    help="requests per level at least (clients x rounds)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--hf-requests", type=int, default=4)
    ap.add_argument("--peer-levels", type=int, nargs="+", default=[1, 16],
                    help="levels for transformers serve (it is slow at high concurrency)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-batch-size", type=int, default=64)
    ap.add_argument("--level-s", type=float, default=240, help="time limit of one level")
    ap.add_argument("--peers", nargs="+", default=["hf", "transformers-serve"],
                    choices=[*PEERS, "none"])
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/serve.json"))
    args = ap.parse_args()
    s = Settings(model=args.model, levels=args.levels, requests=args.requests,
                 max_tokens=args.max_tokens, hf_requests=args.hf_requests,
                 peer_levels=args.peer_levels, peers=[p for p in args.peers if p != "none"],
                 threads=args.threads, max_batch_size=args.max_batch_size, level_s=args.level_s)
    t_all = time.perf_counter()
    rows = run_all(s, ROOT / "runs" / "bench-serve", log=lambda m: print(m, flush=True))
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.processor() or
              platform.machine(), "cpus": os.cpu_count(), "threads": args.threads,
              "model": args.model, "max_tokens": args.max_tokens, "argv": sys.argv[1:],
              "load_avg_end": os.getloadavg(), "total_s": round(time.perf_counter() - t_all, 1),
              "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"[bench] wrote {args.out} ({result['total_s']} s)")


if __name__ == "__main__":
    main()
