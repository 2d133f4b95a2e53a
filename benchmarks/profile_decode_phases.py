"""Where a batch-1 greedy decode token's time goes, per weight precision: the C step's phases
(native.c built with -DLM_PROF: each thread's wall time per phase, the time it waits at
barriers apart) and Python around the C call, in ms per token, with the barriers and parallel
regions per token. Shares are the point on a shared machine; absolute times need it alone.
``--batch N`` decodes N copies of the prompt together (ms per step of N tokens; those steps run
one C call each, not the greedy burst).

Each precision: ``decode`` (pack=<precision>, greedy, EOS ignored: the one-row tokens run in
C, ``burst``) of ``--new-tokens`` and of 1 token, best of ``--repeats``; per token = the
difference / (new - 1), so the prefill and first token drop out. Each phase: its mean over the
C steps of the fastest run, and the least any one step took (on a shared machine: the steps no
other process preempted; their sum estimates an idle machine's step). "python + other" = the
step's wall time less thread 0's mean C phases. The timers cost ~20 ns each (~600 a token).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/profile_decode_phases.py --threads 2
    .venv/bin/python benchmarks/profile_decode_phases.py --model tiny:llama --new-tokens 4 \\
        --repeats 1 --out /tmp/phases.json      # smoke

Takes the shared heavy-work lock (/tmp/lmlab-heavy.lock). JSON to ``--out`` (default
benchmarks/results/decode_phases.json) and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ["LMLAB_NATIVE_PROF"] = "1"  # before lmlab.infer.native loads its library
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("LMLAB_ADAPT_THREADS", "0")  # the thread count asked for, every run

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_decode_precision import MODEL, PROMPT, heavy_lock

# the phases in the table, in step order (native.PHASES less none)
SHOWN = ["embed", "norm", "qkv", "rope", "attention", "merge", "o", "gate_up", "silu", "down",
         "final_norm", "head", "argmax", "wait"]


def run_once(model, ids, weights: str, n: int) -> tuple[float, dict]:
    """Wall seconds of one greedy decode of ``n`` tokens and the C phases it ran."""
    from lmlab.infer import native
    from lmlab.infer.decode import decode
    from lmlab.infer.sampling import SamplingParams

    params = SamplingParams(temperature=0.0, max_new_tokens=n, ignore_eos=True)
    native.phase_times(reset=True)
    t = time.perf_counter()
    decode(model, ids, None, params, pack=weights)
    wall = time.perf_counter() - t
    return wall, native.phase_times(reset=True)


def per_token(model, ids, weights: str, new: int, repeats: int) -> dict:
    """ms per decode token: wall; each phase's mean over the steps of the fastest run and its
    least over all runs' steps (both the mean over threads); Python + other."""
    run_once(model, ids, weights, new)  # warm-up: copies, library, caches
    best = {}
    least: dict[str, list[float]] = {}
    for n in (new, 1):
        runs = [run_once(model, ids, weights, n) for _ in range(repeats)]
        best[n] = min(runs, key=lambda r: r[0])
        for _, ph in runs:
            for name in SHOWN if ph["steps"] else ():  # (a 1-token run may have no C step)
                v = sum(t[name] for t in ph["least"]) / len(ph["least"])
                least.setdefault(name, []).append(v)
    (w_n, p_n), (w_1, _) = best[new], best[1]
    k, steps, threads = max(1, new - 1), p_n["steps"], len(p_n["threads"])
    step = 1000 * (w_n - w_1) / k
    mean = {name: 1000 * sum(t[name] for t in p_n["threads"]) / threads / steps
            for name in SHOWN}
    c0 = 1000 * sum(p_n["threads"][0][name] for name in SHOWN) / steps
    return {"weights": weights, "threads": threads, "step_ms": round(step, 4),
            "phases_ms": {k_: round(v, 4) for k_, v in mean.items()},
            "phases_least_ms": {k_: round(1000 * min(v), 4) for k_, v in least.items()},
            "c_ms_thread0": round(c0, 4), "python_other_ms": round(step - c0, 4),
            "least_sum_ms": round(1000 * sum(min(v) for v in least.values()), 4),
            "barriers_per_token": round(p_n["barriers"] / steps, 1),
            "regions_per_token": round(p_n["regions"] / steps, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=MODEL)
    p.add_argument("--weights", nargs="+", default=["fp32", "bf16", "int8"],
                   choices=["fp32", "bf16", "int8"])
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--batch", type=int, default=1, help="prompts decoded together (copies)")
    p.add_argument("--out", default="benchmarks/results/decode_phases.json")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from lmlab.infer import native
    from lmlab.infer.decode import encode_prompts
    from lmlab.models import load_model, load_tokenizer

    if native.load() is None or not native.profiling():
        raise SystemExit(f"no profiling build of the native step: {native.why_not()}")
    with heavy_lock():
        tok = load_tokenizer(args.model)
        model = load_model(args.model, dtype=torch.float32, device=torch.device("cpu")).eval()
        ids = torch.tensor([encode_prompts(tok, [[{"role": "user", "content": PROMPT}]])[0]])
        ids = ids.repeat(args.batch, 1)
        rows = [per_token(model, ids, w, args.new_tokens, args.repeats) for w in args.weights]
    report = {"args": vars(args), "threads": torch.get_num_threads(),
              "int8_kernel": native.int8_kernel(), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    what = "token" if args.batch == 1 else f"step of {args.batch} tokens"
    print(f"ms per {what}, {torch.get_num_threads()} threads (each phase: mean over threads; "
          f"mean over steps / least of any step; wait = at barriers)")
    print("| phase | " + " | ".join(r["weights"] for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for name in SHOWN:
        print(f"| {name} | " + " | ".join(f"{r['phases_ms'][name]:.3f} / "
                                          f"{r['phases_least_ms'][name]:.3f}" for r in rows)
              + " |")
    for key, label in (("least_sum_ms", "sum of the least"),
                       ("c_ms_thread0", "C step (thread 0, mean)"),
                       ("python_other_ms", "python + other"), ("step_ms", "token (wall)"),
                       ("barriers_per_token", "barriers / token"),
                       ("regions_per_token", "parallel regions / token")):
        print(f"| {label} | " + " | ".join(str(r[key]) for r in rows) + " |")


if __name__ == "__main__":
    main()
