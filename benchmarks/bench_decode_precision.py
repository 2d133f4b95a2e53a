"""Decoding speed by weight precision (``decode_weights`` = fp32 | bf16 | int8) against the
memory-bandwidth bound, with HF ``generate`` beside it.

On demand, not a test. Batch-1 decoding reads every weight once per token, so the fastest a
CPU can decode is (read bandwidth) / (bytes of weights read per token); rounding the weights to
bf16 or int8 (q8_0: blocks of 32 weights with an fp16 scale; inputs rounded per block at run
time) cuts the bytes to 1/2 or ~1/4. The int8 products run the kernel ``env.int8_kernel`` names
(avx512 = VNNI, avx2, generic; ``LMLAB_NATIVE_ISA=avx2`` measures a fallback). For each precision
and batch size (same chat prompt in every row, exactly ``--new-tokens`` tokens, EOS ignored):

- ours: ``lmlab.infer.decode.decode`` with ``pack=<precision>`` (the C step for one-token
  steps; the prefill through oneDNN over the same rounded weights), greedy, best of
  ``--repeats``; end-to-end tok/s, and the decode-step rate (prefill and first token taken out
  by timing a 1-token run too);
- the bound: read bandwidth (``lmlab.hardware.read_bandwidth`` over ``--mib`` MiB: the
  faster of the C streaming read and a torch ``sum``, the probe's figure; best of the runs
  before and after decoding) / ``precision.weight_bytes(model, precision)``; at batch B the
  bound is B times it (``hardware.decode_bound``: the weights are read once per step for all
  rows); % of bound = step rate / bound;
- agreement: the greedy tokens of each precision against fp32's, position by position (the
  first ``--new-tokens`` of row 0; the first position where they differ);
- HF ``generate`` (fp32, greedy, ``min_new_tokens`` = ``max_new_tokens``) at each batch size.

Takes the shared heavy-work lock (/tmp/lmlab-heavy.lock) so nothing else runs beside it.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_decode_precision.py --threads 2
    .venv/bin/python benchmarks/bench_decode_precision.py --model tiny:llama --mib 8 \\
        --new-tokens 4 --repeats 1 --out /tmp/dp.json      # smoke

Writes JSON to ``--out`` (default benchmarks/results/decode_precision.json) and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("LMLAB_ADAPT_THREADS", "0")  # the thread count asked for, every run

MODEL = "smollm2-135m-instruct"
PROMPT = "Explain photosynthesis in one sentence."
LOCK = "/tmp/lmlab-heavy.lock"
GB = 1e9


@contextlib.contextmanager
def heavy_lock():
    with open(LOCK, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[bench] waiting for {LOCK} (another heavy run holds it)", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def best_time(fn, repeats: int) -> float:
    """Minimum wall time of ``repeats`` calls, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def read_bandwidth(mib: int) -> dict:
    """The probe's read bandwidth over ``mib`` MiB (far larger than the caches): GB/s and how
    (the C streaming read, else a torch sum; each reader's figure)."""
    from lmlab.hardware import read_bandwidth as probe_read

    return probe_read(mib * 2**20)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines()
                  if ln.startswith("flags")), [])
    return [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile")
            if f in flags]


def ours(model, ids, weights: str, new: int, repeats: int) -> dict:
    """Our greedy decode at ``weights``: end-to-end and decode-step rates, and the tokens."""
    from lmlab.infer import native
    from lmlab.infer.decode import decode
    from lmlab.infer.sampling import SamplingParams

    B = ids.shape[0]

    def run(n):
        params = SamplingParams(temperature=0.0, max_new_tokens=n, ignore_eos=True)
        return decode(model, ids, None, params, pack=weights)

    tokens = run(new).tokens
    t_full = best_time(lambda: run(new), repeats)
    t_one = best_time(lambda: run(1), repeats)
    step = (t_full - t_one) / max(1, new - 1)
    return {"tok_s": round(B * new / t_full, 2),
            "step_ms": round(1000 * step, 3),
            "step_tok_s": round(B / step, 2) if step > 0 else None,
            "native": native.available(), "tokens": tokens}


def hf(model, ids, new: int, repeats: int) -> dict:
    """HF ``generate``, greedy, exactly ``new`` tokens per row."""
    mask = torch.ones_like(ids)

    def run():
        with torch.inference_mode():
            model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new,
                           min_new_tokens=new, do_sample=False, pad_token_id=0)

    return {"tok_s": round(ids.shape[0] * new / best_time(run, repeats), 2)}


def agreement(a: list[int], b: list[int]) -> dict:
    same = sum(x == y for x, y in zip(a, b))
    first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
    return {"equal_fraction": round(same / max(1, len(a)), 4), "first_difference": first}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=MODEL, help="model alias or folder")
    p.add_argument("--weights", nargs="+", default=["fp32", "bf16", "int8"],
                   choices=["fp32", "bf16", "int8"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--mib", type=int, default=512, help="size of the bandwidth test's tensor")
    p.add_argument("--no-hf", action="store_true", help="leave out HF generate")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--out", default="benchmarks/results/decode_precision.json")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from lmlab.hardware import decode_bound
    from lmlab.infer.decode import encode_prompts
    from lmlab.infer.native import int8_kernel
    from lmlab.infer.precision import weight_bytes
    from lmlab.models import load_model, load_tokenizer

    with heavy_lock():
        tok = load_tokenizer(args.model)
        model = load_model(args.model, dtype=torch.float32, device=torch.device("cpu")).eval()
        prompt = encode_prompts(tok, [[{"role": "user", "content": PROMPT}]])[0]
        bw = [read_bandwidth(args.mib)]
        rows: list[dict] = []
        fp32_tokens: dict[int, list[int]] = {}
        for B in args.batches:
            ids = torch.tensor([prompt] * B)
            for w in args.weights:
                r = ours(model, ids, w, args.new_tokens, args.repeats)
                toks = r.pop("tokens")[0]
                if w == "fp32":
                    fp32_tokens[B] = toks
                row = {"engine": "lmlab", "weights": w, "batch": B, **r,
                       "weight_MB_per_step": round(weight_bytes(model, w) / 1e6, 2)}
                if B in fp32_tokens and w != "fp32":
                    row["agreement_vs_fp32"] = agreement(toks, fp32_tokens[B])
                rows.append(row)
                print(f"[bench] lmlab {w} batch {B}: {r['tok_s']} tok/s end to end, "
                      f"{r['step_tok_s']} tok/s per step", flush=True)
            if not args.no_hf:
                rows.append({"engine": "hf", "weights": "fp32", "batch": B,
                             **hf(model, ids, args.new_tokens, args.repeats)})
                print(f"[bench] hf batch {B}: {rows[-1]['tok_s']} tok/s", flush=True)
        bw.append(read_bandwidth(args.mib))
    read = max(b["bandwidth_gbs"] for b in bw)
    for row in rows:
        if row["engine"] == "lmlab":
            bound = decode_bound(read, row["weight_MB_per_step"] * 1e6, row["batch"])
            row["bound_tok_s"] = round(bound, 2)
            row["pct_of_bound"] = round(100 * row["step_tok_s"] / bound, 1) \
                if row["step_tok_s"] else None
    env = {"python": sys.version.split()[0], "torch": torch.__version__,
           "threads": torch.get_num_threads(), "cpu": cpu_name(), "cpu_flags": cpu_flags(),
           "cores": os.cpu_count(), "read_GB_s": [b["bandwidth_gbs"] for b in bw], "read": bw,
           "int8_kernel": int8_kernel()}
    report = {"args": vars(args), "env": env, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{env['cpu']} ({', '.join(env['cpu_flags'])}), {env['threads']} threads, "
          f"read {read:.1f} GB/s, int8 kernel {env['int8_kernel']}")
    print("| engine | weights | batch | tok/s | step tok/s | bound tok/s | % of bound | "
          "MB/step | agreement vs fp32 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ag = r.get("agreement_vs_fp32")
        print(f"| {r['engine']} | {r['weights']} | {r['batch']} | {r['tok_s']} | "
              f"{r.get('step_tok_s', '')} | {r.get('bound_tok_s', '')} | "
              f"{r.get('pct_of_bound', '')} | {r.get('weight_MB_per_step', '')} | "
              f"{'' if ag is None else ag['equal_fraction']} |")


if __name__ == "__main__":
    main()
