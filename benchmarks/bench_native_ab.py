"""A/B of two builds of the C decode step (native.c) on the same model, alternating: batch-1
greedy decoding through the C greedy run, per weight precision; ms per token of the C call
(least and median over rounds) and whether the two builds' logits are equal bit for bit.
``--batch N`` decodes N copies of the prompt instead, through one C step call per token (ms
per step of N tokens, the prefill left out).

On demand, not a test. Build A is ``--a`` (a native.c file, e.g. an older commit's), build B
the working tree's native.c; ``--a-defines`` / ``--b-defines`` add -D flags to either (a knob
of one source against another, e.g. ``PF_NEXT=0``). Both are compiled here with native.py's
flags into a temporary folder (not the cache). The rounds alternate A, B, B, A, ... so that
a drift of the machine falls on both.

    git show 8564586:src/lmlab/infer/native.c > /tmp/native_a.c
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_native_ab.py --a /tmp/native_a.c \\
        --threads 2
    .venv/bin/python benchmarks/bench_native_ab.py --a src/lmlab/infer/native.c \\
        --b-defines PF_NEXT=0 --model tiny:llama --new-tokens 8 --rounds 2   # smoke

Takes the shared heavy-work lock (/tmp/lmlab-heavy.lock). JSON to ``--out`` (default
benchmarks/results/native_ab.json) and a markdown table.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("LMLAB_ADAPT_THREADS", "0")  # the thread count asked for, every run

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_decode_precision import MODEL, PROMPT, heavy_lock

FUNCS = ("lm_step", "lm_greedy", "lm_work_floats", "lm_q8_isa", "lm_q8_matvec", "lm_read")


def build(source: Path, defines: list[str], out: Path, like):
    """``source`` compiled as native.py compiles native.c (plus ``-D`` ``defines``), loaded,
    its functions typed as the library ``like``'s."""
    from lmlab.infer import native

    cmd = [native._compiler() or "cc", *native.FLAGS, *[f"-D{d}" for d in defines],
           "-fopenmp", "-o", str(out), str(source), "-lm"]
    subprocess.run(cmd, check=True)
    lib = ctypes.CDLL(str(out))
    for name in FUNCS:
        getattr(lib, name).restype = getattr(like, name).restype
        getattr(lib, name).argtypes = getattr(like, name).argtypes
    return lib


class Timed:
    """A library whose ``lm_greedy`` calls (seconds per token) and ``lm_step`` calls after the
    first of a run (seconds per step; the first is the prefill) are timed, into ``times``."""

    def __init__(self, lib):
        self.lib, self.times, self.calls = lib, [], 0

    def __getattr__(self, name):
        return getattr(self.lib, name)

    def clear(self):
        self.times.clear()
        self.calls = 0

    def lm_greedy(self, *a):
        t = time.perf_counter()
        k = self.lib.lm_greedy(*a)
        self.times.append((time.perf_counter() - t) / max(1, k))
        return k

    def lm_step(self, *a):
        t = time.perf_counter()
        out = self.lib.lm_step(*a)
        if self.calls:
            self.times.append(time.perf_counter() - t)
        self.calls += 1
        return out


def run(model, ids, weights: str, new: int, lib) -> torch.Tensor:
    """One greedy decode of the rows of ``ids`` through ``lib``: every C step's logits."""
    from lmlab.infer import native
    from lmlab.infer.decode import stream_tokens
    from lmlab.infer.sampling import SamplingParams

    native._lib = lib
    p = SamplingParams(temperature=0.0, max_new_tokens=new, ignore_eos=True)
    steps = list(stream_tokens(model, ids, None, p, pack=weights, burst=new))
    return torch.cat([s.logits for s in steps[1:]])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--a", required=True, help="native.c of build A")
    p.add_argument("--a-defines", nargs="*", default=[])
    p.add_argument("--b-defines", nargs="*", default=[])
    p.add_argument("--model", default=MODEL)
    p.add_argument("--weights", nargs="+", default=["fp32", "bf16", "int8"],
                   choices=["fp32", "bf16", "int8"])
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=6, help="runs of each build per precision")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--batch", type=int, default=1, help="prompts decoded together (copies)")
    p.add_argument("--out", default="benchmarks/results/native_ab.json")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from lmlab.infer import native
    from lmlab.infer.decode import encode_prompts
    from lmlab.models import load_model, load_tokenizer

    like = native.load()
    if like is None:
        raise SystemExit(f"no native step: {native.why_not()}")
    rows = []
    with heavy_lock(), tempfile.TemporaryDirectory() as tmp:
        libs = {"A": Timed(build(Path(args.a), args.a_defines, Path(tmp) / "a.so", like)),
                "B": Timed(build(native.SOURCE, args.b_defines, Path(tmp) / "b.so", like))}
        tok = load_tokenizer(args.model)
        model = load_model(args.model, dtype=torch.float32, device=torch.device("cpu")).eval()
        ids = torch.tensor([encode_prompts(tok, [[{"role": "user", "content": PROMPT}]])[0]])
        ids = ids.repeat(args.batch, 1)
        try:
            for w in args.weights:
                logits = {k: run(model, ids, w, args.new_tokens, lib)  # warm-up, reference
                          for k, lib in libs.items()}
                per = {"A": [], "B": []}
                for r in range(args.rounds):
                    for k in ("AB" if r % 2 == 0 else "BA"):
                        libs[k].clear()
                        got = run(model, ids, w, args.new_tokens, libs[k])
                        if not torch.equal(got, logits[k]):
                            raise SystemExit(f"build {k} changed its own logits between runs")
                        per[k].append(1000 * statistics.mean(libs[k].times))
                row = {"weights": w, "equal_logits": torch.equal(logits["A"], logits["B"]),
                       "equal_tokens": torch.equal(logits["A"].argmax(-1),
                                                   logits["B"].argmax(-1))}
                for k in "AB":
                    row[f"{k}_least_ms"] = round(min(per[k]), 4)
                    row[f"{k}_median_ms"] = round(statistics.median(per[k]), 4)
                row["B_over_A_least"] = round(row["B_least_ms"] / row["A_least_ms"], 4)
                row["B_over_A_median"] = round(row["B_median_ms"] / row["A_median_ms"], 4)
                rows.append(row)
                print(f"[ab] {row}", flush=True)
        finally:
            native._lib = like
    report = {"args": vars(args), "threads": torch.get_num_threads(), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    what = "token of the C greedy run" if args.batch == 1 else f"step of {args.batch} tokens"
    print(f"\nms per {what}, {torch.get_num_threads()} threads, "
          f"A = {args.a} {' '.join(args.a_defines)}, B = native.c {' '.join(args.b_defines)}")
    print("| weights | A least | B least | B/A least | A median | B median | B/A median | "
          "logits equal |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['weights']} | {r['A_least_ms']} | {r['B_least_ms']} | "
              f"{r['B_over_A_least']} | {r['A_median_ms']} | {r['B_median_ms']} | "
              f"{r['B_over_A_median']} | {r['equal_logits']} |")


if __name__ == "__main__":
    main()
