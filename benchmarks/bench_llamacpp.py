"""llama.cpp as the peer: decoding (batch 1 and 8) and serving, side by side with ours.

On demand, not a test. Same model (the default alias, SmolLM2-135M-Instruct), same chat
prompts, greedy, ``--new-tokens`` tokens per prompt with EOS ignored, ``--threads`` threads on
every side. Needs the ``llamacpp`` extra (docs/llamacpp.md: build flags); takes
/tmp/lmlab-heavy.lock so heavy runs go one at a time (not with ``--smoke``).

    .venv/bin/python benchmarks/bench_llamacpp.py                      # decode + serve
    .venv/bin/python benchmarks/bench_llamacpp.py --only decode --gguf f16 q8_0
    .venv/bin/python benchmarks/bench_llamacpp.py --ours fp32: packed:pack=true \\
        bf16:pack=true,weights=bf16                                  # once that key exists

Sections:

- ``decode``: tokens/s at batch 1 and batch 8 (the whole call: prefill + ``--new-tokens``
  steps; best of ``--repeats``) and time to the first token, for
  ours (each ``--ours NAME:KEY=VALUE,...`` variant: the keys go to ``infer.decode.decode``, so
  new weight formats are measured by naming their key), llama.cpp through
  ``infer.llamacpp`` (our batched loop over llama.cpp's forward, several sequences per
  ``llama_decode``) at each ``--gguf`` type, and llama-cpp-python's own ``Llama.generate``
  (batch 1 only: it decodes one sequence). Each llama.cpp row also says how many of its
  tokens equal ours (the first variant) position by position, and the first position where they
  part.
- ``serve``: ``lmlab serve`` (engine=lmlab, and engine=llama.cpp at ``--serve-gguf``) vs
  ``python -m llama_cpp.server`` on the same GGUF, under ``--levels`` concurrent streaming
  clients (``serve.bench``'s load generator): aggregate tok/s, TTFT and latency p50 / p99.
  Every reply is ``--new-tokens`` tokens: ours get ``ignore_eos``, llama_cpp.server
  ``min_tokens`` (its logits processor masks EOS until then). llama_cpp.server runs with
  ``--interrupt_requests false``: by default a queued request ends the one streaming (a
  ``[DONE]`` after its next chunk), so 16 clients got 18 tokens in all (session 17). It
  serves one request at a time (no batching across clients). A row's ``reply_tokens``
  is the reply length, or its range (chunks for llama_cpp.server, which sends no usage).

Writes ``--out`` (JSON); prints a markdown table per section.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("LMLAB_ADAPT_THREADS", "0")  # the thread count asked for, every run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
MODEL = "smollm2-135m-instruct"
QUESTIONS = ["What is the capital of France?", "Write a haiku about the sea.",
             "Explain photosynthesis in one sentence.", "Give three tips for learning Python.",
             "What is 17 times 3?", "Name a famous painter and one of their works.",
             "Why is the sky blue?", "Describe a cat to someone who has never seen one."]


def parse_variant(text: str) -> tuple[str, dict]:
    """``name:key=value,key=value`` -> (name, kwargs); values true/false/ints become those."""
    name, _, rest = text.partition(":")
    kw = {}
    for part in filter(None, rest.split(",")):
        k, _, v = part.partition("=")
        low = v.lower()
        kw[k] = True if low == "true" else False if low == "false" else \
            int(v) if v.lstrip("-").isdigit() else v
    return name or "ours", kw


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """(best, median wall seconds over ``repeats`` calls, the last result)."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times), out


def agreement(a: list[list[int]], b: list[list[int]]) -> dict:
    """Position-by-position equality of two sets of token rows."""
    same = sum(x == y for ra, rb in zip(a, b) for x, y in zip(ra, rb))
    total = sum(min(len(ra), len(rb)) for ra, rb in zip(a, b))
    first = [next((i for i, (x, y) in enumerate(zip(ra, rb)) if x != y), None)
             for ra, rb in zip(a, b)]
    return {"same_tokens": f"{same}/{total}", "agreement": round(same / max(total, 1), 3),
            "first_difference": first}


# ----------------------------------------------------------------------------- decode


def ours_rows(model, tok, args, batch: int) -> list[dict]:
    from lmlab.infer.decode import decode, encode_prompts, left_pad
    from lmlab.infer.sampling import SamplingParams

    prompts = [[{"role": "user", "content": q}] for q in (QUESTIONS * 2)[:batch]]
    ids, mask = left_pad(encode_prompts(tok, prompts), tok.pad_token_id)
    N = args.new_tokens
    p = SamplingParams(temperature=0, max_new_tokens=N, ignore_eos=True)
    p1 = SamplingParams(temperature=0, max_new_tokens=1, ignore_eos=True)
    rows = []
    for name, kw in map(parse_variant, args.ours):
        row = {"engine": f"ours {name}", "keys": ",".join(f"{k}={v}" for k, v in kw.items()),
               "batch": batch}

        def run(params, kw=kw):
            return decode(model, ids, mask, params, **kw)

        try:
            with torch.inference_mode():
                run(p1)  # warm-up (packing, native build)
                best, med, d = timed(lambda: run(p), args.repeats)
                ttft, _, _ = timed(lambda: run(p1), args.repeats)
        except (TypeError, ValueError) as e:  # a key this code does not have (yet)
            rows.append({**row, "error": f"{type(e).__name__}: {e}"})
            continue
        rows.append({**row, "tok_s": round(batch * N / best, 2),
                     "tok_s_median": round(batch * N / med, 2), "ttft_ms": round(1000 * ttft, 1),
                     "tokens": d.tokens})
    return rows


def llamacpp_rows(tok, args, batch: int, ftype: str) -> list[dict]:
    from lmlab.infer import llamacpp
    from lmlab.infer.decode import StopStrings, encode_prompts
    from lmlab.infer.sampling import SamplingParams

    path = llamacpp.gguf_file(args.model, ftype)
    prompts = [[{"role": "user", "content": q}] for q in (QUESTIONS * 2)[:batch]]
    enc = encode_prompts(tok, prompts)
    N = args.new_tokens
    n_ctx = max(256, batch * (max(map(len, enc)) + N + 8))
    llm = llamacpp.LlamaCpp(path, n_seq=batch, n_ctx=n_ctx, threads=args.threads)
    p = SamplingParams(temperature=0, max_new_tokens=N, ignore_eos=True)
    p1 = SamplingParams(temperature=0, max_new_tokens=1, ignore_eos=True)

    def run(params):
        return llamacpp._decode_rows(llm, enc, params, None, set(), StopStrings(None, []))

    run(p1)
    best, med, res = timed(lambda: run(p), args.repeats)
    ttft, _, _ = timed(lambda: run(p1), args.repeats)
    rows = [{"engine": f"llama.cpp {ftype} (lmlab loop)", "batch": batch,
             "file_MiB": round(path.stat().st_size / 2**20, 1),
             "tok_s": round(batch * N / best, 2), "tok_s_median": round(batch * N / med, 2),
             "ttft_ms": round(1000 * ttft, 1), "tokens": [r[0] for r in res]}]
    llm.close()
    if batch == 1:
        rows.append(llama_generate_row(path, enc[0], args, ftype))
    return rows


def llama_generate_row(path: Path, ids: list[int], args, ftype: str) -> dict:
    """llama-cpp-python's own loop, ``Llama.generate`` (greedy), batch 1."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), n_ctx=len(ids) + args.new_tokens + 16,
                          n_threads=args.threads, n_threads_batch=args.threads, verbose=False)
    N = args.new_tokens

    def run(n):
        out = []
        llm.reset()  # no prompt reuse between calls: each call prefills, as ours do
        for t in llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0,
                              reset=True):
            out.append(t)
            if len(out) >= n:
                break
        return out

    run(1)
    best, med, toks = timed(lambda: run(N), args.repeats)
    ttft, _, _ = timed(lambda: run(1), args.repeats)
    llm.close()
    return {"engine": f"llama-cpp-python Llama.generate {ftype}", "batch": 1,
            "tok_s": round(N / best, 2), "tok_s_median": round(N / med, 2),
            "ttft_ms": round(1000 * ttft, 1), "tokens": [toks]}


def section_decode(args) -> list[dict]:
    from lmlab.models import load_model, load_tokenizer

    tok = load_tokenizer(args.model)
    model = load_model(args.model).eval()
    rows = []
    for batch in args.batches:
        ours = ours_rows(model, tok, args, batch)
        ref = next((r["tokens"] for r in ours if "tokens" in r), None)
        rows += ours
        for ftype in args.gguf:
            rows += llamacpp_rows(tok, args, batch, ftype)
        for r in rows:
            if r["batch"] == batch and ref is not None and "tokens" in r:
                r.update(agreement(ref, r["tokens"]))
        for r in (r for r in rows if r["batch"] == batch):
            print(f"[bench] {json.dumps({k: v for k, v in r.items() if k != 'tokens'})}",
                  flush=True)
    for r in rows:
        r.pop("tokens", None)
    return rows


# ----------------------------------------------------------------------------- serve


def section_serve(args) -> list[dict]:
    from lmlab.infer import llamacpp
    from lmlab.serve import bench

    s = bench.Settings(model=args.model, levels=args.levels, requests=args.requests,
                       max_tokens=args.new_tokens, threads=args.threads,
                       max_batch_size=args.max_batch_size, level_s=args.level_s, peers=[])
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    logdir = ROOT / "runs" / "bench-llamacpp"
    gguf = llamacpp.gguf_file(args.model, args.serve_gguf)  # exported once, before timing
    ours = bench.lmlab_command(s)
    servers = [("lmlab serve (engine=lmlab, fp32)", ours, args.model, bench.start),
               ("lmlab serve (engine=lmlab, decode_weights=int8)", ours + ["decode_weights=int8"],
                args.model, bench.start),
               (f"lmlab serve (engine=llama.cpp, {args.serve_gguf})",
                ours + ["engine=llama.cpp", f"gguf={args.serve_gguf}"], args.model, bench.start),
               (f"llama_cpp.server ({args.serve_gguf})",
                [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--port",
                 "{port}", "--n_threads", str(args.threads), "--n_threads_batch",
                 str(args.threads), "--n_ctx", "4096", "--verbose", "false",
                 "--interrupt_requests", "false"], str(gguf),
                start_llama_server)]
    rows = []
    for name, cmd, model_name, starter in servers:
        print(f"[bench] starting {name}", flush=True)
        port = bench.free_port()
        log = logdir / f"{name.split()[0]}-{len(rows)}.log"
        try:
            proc = starter([c.replace("{port}", str(port)) for c in cmd],
                           f"http://127.0.0.1:{port}", env, log)
        except RuntimeError as e:
            rows.append({"server": name, "error": str(e)})
            continue
        try:
            rows += bench.measure_levels(name, f"http://127.0.0.1:{port}", model_name, s,
                                         args.levels, ignore_eos=True,
                                         log=lambda m: print(m, flush=True))
        finally:
            bench.stop(proc)
    return rows


def start_llama_server(cmd: list[str], url: str, env: dict, log: Path, timeout: float = 300):
    """``python -m llama_cpp.server`` has no /health: wait until /v1/models answers."""
    from lmlab.serve import bench

    return bench.start(cmd, url, env, log, timeout, ready_path="/v1/models")


# ----------------------------------------------------------------------------- main


def table(rows: list[dict], keys: tuple[str, ...]) -> str:
    head = "| " + " | ".join(keys) + " |\n" + "|---" * len(keys) + "|\n"
    return head + "".join("| " + " | ".join(str(r.get(k, "")) for k in keys) + " |\n"
                          for r in rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--only", nargs="*", choices=["decode", "serve"], default=["decode", "serve"])
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batches", type=int, nargs="*", default=[1, 8])
    ap.add_argument("--gguf", nargs="*", default=["f16", "q8_0", "q4_0", "q4_1"],
                    choices=["f16", "q8_0", "q4_0", "q4_1"])
    ap.add_argument("--ours", nargs="*", default=["fp32:", "fp32-packed:pack=true"],
                    help="our variants, NAME:KEY=VALUE,... (keys of infer.decode.decode)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--levels", type=int, nargs="*", default=[1, 4, 16, 64])
    ap.add_argument("--requests", type=int, default=16, help="serve: requests per level at least")
    ap.add_argument("--serve-gguf", default="q8_0", choices=["f16", "q8_0", "q4_0", "q4_1"])
    ap.add_argument("--max-batch-size", type=int, default=64)
    ap.add_argument("--level-s", type=float, default=300, help="serve: time limit of one level")
    ap.add_argument("--smoke", action="store_true", help="no lock (tests; timings mean nothing)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/llamacpp.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from bench_vision import heavy_lock

    from lmlab.infer import llamacpp

    llamacpp.require()
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "model": args.model,
              "machine": f"{platform.processor() or platform.machine()} {os.cpu_count()} cpus",
              "cpu": _cpu_model(), "threads": args.threads, "torch": torch.__version__,
              "llama_cpp_python": llamacpp.version(), "new_tokens": args.new_tokens,
              "command": " ".join([Path(sys.executable).name] + sys.argv)}
    with heavy_lock(not args.smoke):
        t0 = time.perf_counter()
        if "decode" in args.only:
            result["decode"] = section_decode(args)
            print(table(result["decode"], ("engine", "batch", "tok_s", "tok_s_median",
                                           "ttft_ms", "agreement", "error")))
        if "serve" in args.only:
            result["serve"] = section_serve(args)
            print(table(result["serve"], ("server", "clients", "requests", "failed",
                                          "reply_tokens", "tok_s",
                                          "ttft_p50", "ttft_p99", "latency_p99", "error")))
        result["total_s"] = round(time.perf_counter() - t0, 1)
    for key, name in (("decode", "engine"), ("serve", "server")):  # rows by name: what
        if key in result:  # `lmlab report`'s benchmark table reads (it skips lists)
            result[key] = {_row_name(r, name): r for r in result[key]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"[bench] wrote {args.out}")


def _row_name(r: dict, name: str) -> str:
    size = f"batch {r['batch']}" if "batch" in r else f"{r.get('clients')} clients"
    return f"{r[name]}, {size}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
