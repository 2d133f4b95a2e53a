"""The memory-bandwidth bound of batch-1 decoding, and how close our decode loop gets to it.

On demand, not a test. Batch-1 decoding reads every weight once per token, so a CPU cannot
decode faster than (memory bandwidth) / (bytes of weights read per token). This script
measures the four pieces and prints them side by side:

1. bandwidth: fp32 tensors far larger than the L3 cache (default 512 MiB each); ``dst.copy_(src)``
   (GB/s counting bytes read + bytes written, 2 x size, as STREAM's copy; the write-allocate
   read of ``dst`` is not counted), ``src.sum()`` (a pure read, size), and one GEMV,
   ``W @ x`` over a matrix of the same size (a read at the speed of the matmul kernel decoding
   uses), each at 1 and 2 threads (``--bw-threads``), best of ``--bw-repeats``;
2. bytes read per decoded token, per module kind: every projection's weight (and bias), the
   norm weights, one row of the input embedding, and the whole LM head (with tied embeddings
   that is the embedding matrix, read in full once per token); the KV cache read per step at
   a few context lengths, as a side note (it grows with the context; weights do not);
3. the bound, tok/s = bandwidth / bytes per token, from the best read or copy figure at the
   decode thread count (the higher of the two: the stricter bound);
4. our batch-1 greedy tok/s (``lmlab.infer.decode``: default, ``pack=True`` (the C step of
   ``infer.native`` for one-token steps), and ``pack=True`` with the C step off) and HF
   ``generate`` on one fixed chat prompt, exactly ``--new-tokens`` tokens (EOS banned until
   then, as HF's ``min_new_tokens``), best of ``--repeats``, end to end (prefill included) and
   per decode step (first token excluded); each as a % of the bound. The bandwidth is measured
   again after decoding (this machine's moves within minutes) and the bound takes the best;
4b. the C step alone against a plain read, in ``--pairs`` alternating pairs (their ratio does
   not depend on which bandwidth level the machine is at);
4c. ``pack=True`` decoding end to end against the bound of the same minutes, in
   ``--decode-pairs`` alternating (read, decode) pairs: the medians of the per-pair fractions;
5. where the time goes: a ``torch.profiler`` breakdown of ``--profile-steps`` decode steps
   (share of the matmuls, their effective read bandwidth, the top ops), and the projections
   alone, timed per kind in decode order (``F.linear`` and packed): ms and GB/s each.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_bandwidth.py --threads 2
    .venv/bin/python benchmarks/bench_bandwidth.py --model tiny:llama --mib 8 --new-tokens 4

Writes the numbers as JSON to ``--out`` (default benchmarks/results/bandwidth.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MODEL = "smollm2-135m-instruct"
PROMPT = "Explain photosynthesis in one sentence."
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::mv", "aten::addmv",
              "mkldnn::_linear_pointwise")
GB = 1e9


def best_time(fn, repeats: int) -> float:
    """Minimum wall time of ``repeats`` calls (after one untimed warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


# ----------------------------------------------------------------------------- 1. bandwidth


def bandwidth(mib: int, threads: list[int], repeats: int) -> dict:
    """GB/s per test and thread count: copy (read + write), sum (read), GEMV (read)."""
    n = mib * 2**20 // 4
    src, dst = torch.randn(n), torch.empty(n)
    dst.copy_(src)  # touch every page before timing
    cols = 4096
    w, x = src[:n // cols * cols].view(-1, cols), torch.randn(cols)
    y = torch.empty(w.shape[0])
    nbytes, wbytes = n * 4, w.numel() * 4
    out, before = {"size_MiB": mib, "tests": {}}, torch.get_num_threads()
    try:
        for th in threads:
            torch.set_num_threads(th)
            t_copy = best_time(lambda: dst.copy_(src), repeats)
            t_sum = best_time(lambda: src.sum(), repeats)
            t_mv = best_time(lambda: torch.mv(w, x, out=y), repeats)
            out["tests"][th] = {"copy_GB_s (read+write)": round(2 * nbytes / t_copy / GB, 2),
                                "read_sum_GB_s": round(nbytes / t_sum / GB, 2),
                                "read_gemv_GB_s": round(wbytes / t_mv / GB, 2)}
    finally:
        torch.set_num_threads(before)
    return out


# ----------------------------------------------------------------------------- 2. bytes per token


def bytes_per_token(model) -> dict:
    """Bytes of parameters one batch-1 decode step reads, by kind. Projections (every
    ``nn.Linear`` but the LM head) and the LM head are read in full, norms in full, the input
    embedding one row; a matrix shared by the embedding and the LM head (tied) is read in
    full by the head and one row by the lookup."""
    emb = model.get_input_embeddings()
    head = model.get_output_embeddings()
    parts = {"projections": 0, "lm_head": 0, "norms_and_other": 0, "embedding_row": 0}
    counted = set()
    for mod in model.modules():
        own = list(mod.parameters(recurse=False))
        if not own:
            continue
        if mod is emb:
            parts["embedding_row"] += emb.weight.shape[1] * emb.weight.element_size()
            continue
        size = sum(p.numel() * p.element_size() for p in own if id(p) not in counted)
        counted.update(id(p) for p in own)
        if mod is head:
            parts["lm_head"] += size
        elif isinstance(mod, torch.nn.Linear):
            parts["projections"] += size
        else:
            parts["norms_and_other"] += size
    cfg = model.config
    total = sum(parts.values())
    out = {"bytes": total, "MB": round(total / 1e6, 2), "MiB": round(total / 2**20, 2),
           "parts_bytes": parts,
           "tied_embeddings": emb.weight.data_ptr() == head.weight.data_ptr(),
           "dtype": str(next(model.parameters()).dtype).replace("torch.", "")}
    hkv = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    dh = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    per_ctx_token = 2 * cfg.num_hidden_layers * hkv * dh * next(model.parameters()).element_size()
    out["kv_cache_bytes_per_context_token"] = per_ctx_token
    out["kv_cache_read_per_step_MB"] = {c: round(c * per_ctx_token / 1e6, 2)
                                        for c in (100, 500, 2000)}
    return out


# ----------------------------------------------------------------------------- 4. our decode


def chat_ids(tok, text: str) -> torch.Tensor:
    from lmlab.infer.decode import encode_prompts

    return torch.tensor(encode_prompts(tok, [[{"role": "user", "content": text}]]))


def _off(fn):
    """``fn()`` with the native C step off (``pack=True`` then runs the torch packed step)."""
    from lmlab.infer import native

    with native.off():
        return fn()


def native_vs_read(model, mib: int, pairs: int, context: int = 100) -> dict | None:
    """The C step alone (``infer.native``, one token after ``context`` tokens of cache) against
    a plain read (``src.sum()`` over ``mib`` MiB), timed in alternating pairs, because this
    machine's bandwidth moves between runs: per pair the best of 5 sums and the best of 20
    steps; the step's effective read bandwidth = weights per token / step time."""
    from lmlab.infer.fastpath import LlamaStep
    from lmlab.infer.packed import packed_linears

    if not LlamaStep.supports(model):
        return None
    step = LlamaStep(model, None, 1, context + 2, lin=packed_linears(model))
    nat = step._native_step()
    if nat is None:
        return None
    src = torch.randn(mib * 2**20 // 4)
    wbytes = bytes_per_token(model)["bytes"]
    step.step(torch.randint(0, 100, (1, context)), torch.arange(context)[None], context, None)
    tok, pos = torch.tensor([[1]]), torch.tensor([[context]])
    rows = []
    for _ in range(pairs):
        t_sum = best_time(src.sum, 5)
        t_step = best_time(lambda: nat.step(step.k, step.v, tok, pos, context + 1, None,
                                            False, False), 20)
        rows.append({"sum_GB_s": round(src.numel() * 4 / t_sum / GB, 2),
                     "step_ms": round(1000 * t_step, 3),
                     "step_GB_s": round(wbytes / t_step / GB, 2)})
    for r in rows:
        r["ratio"] = round(r["step_GB_s"] / r["sum_GB_s"], 3)
    ratios = sorted(r["ratio"] for r in rows)
    return {"pairs": rows, "median_ratio": ratios[len(ratios) // 2],
            "best_step_GB_s": max(r["step_GB_s"] for r in rows),
            "best_sum_GB_s": max(r["sum_GB_s"] for r in rows)}


def read_GB_s(src: torch.Tensor, dst: torch.Tensor) -> float:
    """The better of a plain read (``src.sum()``) and a copy (read + write counted), best of 3
    each: the bound's bandwidth figure, as in ``bandwidth``."""
    t_sum = best_time(src.sum, 3)
    t_copy = best_time(lambda: dst.copy_(src), 3)
    return max(src.numel() * 4 / t_sum, 2 * src.numel() * 4 / t_copy) / GB


def decode_pairs(model, ids, new_tokens: int, mib: int, pairs: int) -> dict:
    """``pack=True`` batch-1 greedy (the C step) set against the bandwidth of the same minutes:
    reads and decodes alternate (read, decode, read, decode, ..., read), and each decode's
    bound takes the better of the reads just before and just after it (the stricter). Per
    decode: end to end (best of 2 full decodes) and per step (less the best of 2 first-token
    calls) as a fraction of that bound. Because this machine's bandwidth switches level from
    minute to minute, a bound taken minutes away from the decode it divides can be off by
    40 %; the medians over pairs are the figure that does not depend on the timing, and the
    medians over the "steady" pairs (the reads before and after within 10 % of each other: the
    machine held one level) leave out the pairs during which it switched. Plain
    greedy here: N tokens with EOS not a stop (``ignore_eos``), no logits transform (the
    HF comparison in ``decode_speed`` bans EOS instead, as HF's ``min_new_tokens``, whose
    copy of the logits each step costs ~0.1 ms here)."""
    from lmlab.infer.decode import decode, stream_tokens
    from lmlab.infer.sampling import SamplingParams

    N = new_tokens
    p = SamplingParams(temperature=0, max_new_tokens=N, ignore_eos=True)
    first = SamplingParams(temperature=0, max_new_tokens=1, ignore_eos=True)
    wbytes = bytes_per_token(model)["bytes"]
    src, dst = torch.randn(mib * 2**20 // 4), torch.empty(mib * 2**20 // 4)
    full = lambda: decode(model, ids, None, p, pack=True)  # noqa: E731
    one = lambda: next(iter(stream_tokens(model, ids, None, first, pack=True)))  # noqa: E731
    full()
    reads, rows = [read_GB_s(src, dst)], []
    for _ in range(pairs):
        t, t1 = best_time(full, 2), best_time(one, 2)
        reads.append(read_GB_s(src, dst))
        bw = max(reads[-2], reads[-1])
        bound = bw * GB / wbytes
        # the machine held its level over the pair when the reads before and after agree
        # within 10 %; a pair where it switched level measures neither level
        steady = min(reads[-2], reads[-1]) >= 0.9 * bw
        rows.append({"read_GB_s": round(bw, 2), "bound_tok_s": round(bound, 2),
                     "reads_GB_s": [round(reads[-2], 2), round(reads[-1], 2)], "steady": steady,
                     "tok_s": round(N / t, 2), "step_tok_s": round((N - 1) / (t - t1), 2),
                     "pct": round(100 * N / t / bound, 1),
                     "step_pct": round(100 * (N - 1) / (t - t1) / bound, 1)})
    med = lambda k: sorted(r[k] for r in rows)[len(rows) // 2]  # noqa: E731
    steady = [r for r in rows if r["steady"]]
    smed = lambda k: sorted(r[k] for r in steady)[len(steady) // 2] if steady else None  # noqa: E731
    return {"pairs": rows, "median_pct": med("pct"), "median_step_pct": med("step_pct"),
            "steady_pairs": len(steady), "steady_median_pct": smed("pct"),
            "steady_median_step_pct": smed("step_pct"),
            "reads_GB_s": [round(x, 2) for x in reads]}


def decode_speed(model, tok, ids, new_tokens: int, repeats: int) -> dict:
    """Batch-1 greedy tok/s: ours (default, packed) and HF generate; end to end and per step."""
    from lmlab.infer.decode import decode, stream_tokens
    from lmlab.infer.sampling import SamplingParams

    N = new_tokens
    # EOS banned until N tokens, exactly as HF's min_new_tokens (so the tokens can be compared)
    p = SamplingParams(temperature=0, max_new_tokens=N, min_new_tokens=N)
    first = SamplingParams(temperature=0, max_new_tokens=1)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    runs = {
        "ours": (lambda: decode(model, ids, None, p).tokens[0],
                 lambda: next(iter(stream_tokens(model, ids, None, first)))),
        "ours_packed": (lambda: decode(model, ids, None, p, pack=True).tokens[0],
                        lambda: next(iter(stream_tokens(model, ids, None, first, pack=True)))),
        "ours_packed_torch": (lambda: _off(lambda: decode(model, ids, None, p,
                                                           pack=True).tokens[0]),
                              lambda: _off(lambda: next(iter(stream_tokens(
                                  model, ids, None, first, pack=True))))),
        "hf_generate": (lambda: model.generate(
            input_ids=ids, do_sample=False, max_new_tokens=N, min_new_tokens=N,
            pad_token_id=pad)[0, ids.shape[1]:].tolist(),
            lambda: model.generate(input_ids=ids, do_sample=False, max_new_tokens=1,
                                   pad_token_id=pad)),
    }
    out, ref = {}, None
    for name, (full, one) in runs.items():
        tokens = full()
        ref = tokens if ref is None else ref
        t = best_time(full, repeats)
        t1 = best_time(one, repeats)
        out[name] = {"seconds": round(t, 4), "tok_s": round(N / t, 2),
                     "first_token_ms": round(1000 * t1, 1),
                     "step_tok_s": round((N - 1) / (t - t1), 2) if N > 1 and t > t1 else None,
                     "same_tokens_as_ours": tokens == ref}
    return out


def profile_steps(model, ids, steps: int, pack: bool, proj_bytes: int) -> dict:
    """``torch.profiler`` over ``steps`` decode steps (after the prefill): share of self CPU
    time in the matmuls, their effective read bandwidth, the top ops."""
    from torch.profiler import ProfilerActivity, profile

    from lmlab.infer.decode import stream_tokens
    from lmlab.infer.sampling import SamplingParams

    p = SamplingParams(temperature=0, max_new_tokens=steps + 2, ignore_eos=True)
    gen = stream_tokens(model, ids, None, p, pack=pack)
    next(gen)  # prefill and the first token
    next(gen)  # one step untimed (packs the weights on first use)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            next(gen)
        wall = time.perf_counter() - t0
    gen.close()
    ev = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in ev)  # microseconds
    mm = sum(e.self_cpu_time_total for e in ev if e.key in MATMUL_OPS)
    top = sorted(ev, key=lambda e: -e.self_cpu_time_total)[:8]
    mm_s = mm / 1e6 / steps
    return {"steps": steps, "wall_ms_per_step (profiled)": round(1000 * wall / steps, 2),
            "self_cpu_ms_per_step": round(total / 1000 / steps, 2),
            "matmul_ms_per_step": round(1000 * mm_s, 2),
            "matmul_share": round(mm / total, 3) if total else None,
            "matmul_read_GB_s": round(proj_bytes / mm_s / GB, 2) if mm_s else None,
            "top_ops_ms_per_step": {e.key: round(e.self_cpu_time_total / 1000 / steps, 2)
                                    for e in top}}


def matmul_by_kind(model, pack: bool, repeats: int) -> dict | None:
    """One token's projections alone, in decode order (layer by layer, so the cache holds
    nothing from the last token), timed per kind: ms per token and GB/s of weights read.
    ``F.linear`` over the weight, or the packed copy (``pack``). Llama-style models only."""
    import torch.nn.functional as F

    from lmlab.infer.packed import PackedLinears

    if not hasattr(getattr(model, "model", None), "layers"):
        return None
    names = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
             "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
    order = [(n.split(".")[1], layer.get_submodule(n)) for layer in model.model.layers
             for n in names] + [("lm_head", model.lm_head)]
    lin = PackedLinears() if pack else (lambda x, mod: F.linear(x, mod.weight))
    xs = {mod.in_features: torch.randn(1, 1, mod.in_features) for _, mod in order}
    best: dict[str, float] = {}
    for r in range(repeats + 1):  # the first pass warms up (and packs)
        spent: dict[str, float] = {}
        for kind, mod in order:
            t0 = time.perf_counter()
            lin(xs[mod.in_features], mod)
            spent[kind] = spent.get(kind, 0.0) + time.perf_counter() - t0
        if r:
            best = {k: min(v, best.get(k, v)) for k, v in spent.items()}
    size: dict[str, int] = {}
    for kind, mod in order:
        size[kind] = size.get(kind, 0) + mod.weight.numel() * mod.weight.element_size()
    out = {k: {"shape": list(dict(order)[k].weight.shape), "ms": round(1000 * t, 2),
               "GB_s": round(size[k] / t / GB, 2)} for k, t in best.items()}
    total = sum(best.values())
    out["all"] = {"ms": round(1000 * total, 2), "GB_s": round(sum(size.values()) / total / GB, 2)}
    return out


# ----------------------------------------------------------------------------- report


def table(r: dict) -> str:
    th = r["decode_threads"]
    bw = r["bandwidth"]["tests"][th]
    wb = r["weights_per_token"]
    aft = r["bandwidth_after"]["tests"][th]
    lines = [f"bandwidth ({r['bandwidth']['size_MiB']} MiB fp32, {th} threads): copy "
             f"{bw['copy_GB_s (read+write)']} GB/s (read+write), sum {bw['read_sum_GB_s']} GB/s, "
             f"GEMV {bw['read_gemv_GB_s']} GB/s; after decoding: copy "
             f"{aft['copy_GB_s (read+write)']}, sum {aft['read_sum_GB_s']} GB/s",
             f"weights read per token: {wb['MB']} MB ({wb['MiB']} MiB; {wb['dtype']}, tied "
             f"embeddings: {wb['tied_embeddings']}); KV cache at 500 tokens of context: "
             f"{wb['kv_cache_read_per_step_MB'][500]} MB",
             f"bound: {r['bound']['bandwidth_GB_s']} GB/s / {wb['MB']} MB = "
             f"{r['bound']['tok_s']} tok/s", "",
             "| decoder | tok/s (end to end) | % of bound | tok/s per step | % of bound | "
             "first token ms | same tokens |", "|---|---|---|---|---|---|---|"]
    for name, d in r["decode"].items():
        lines.append(f"| {name} | {d['tok_s']} | {d['pct_of_bound']} % | {d['step_tok_s']} | "
                     f"{d['step_pct_of_bound']} % | {d['first_token_ms']} | "
                     f"{d['same_tokens_as_ours']} |")
    nv = r.get("native_vs_read")
    if nv:
        lines.append(f"\nC step alone vs a plain read, {len(nv['pairs'])} alternating pairs: "
                     f"step/read median {nv['median_ratio']}, best step {nv['best_step_GB_s']} "
                     f"GB/s, best read {nv['best_sum_GB_s']} GB/s; pairs (read GB/s, step ms): "
                     + ", ".join(f"({p['sum_GB_s']}, {p['step_ms']})" for p in nv["pairs"]))
    dp = r.get("decode_pairs")
    if dp:
        lines.append(f"\npack=True decode vs the bound of the same minutes, {len(dp['pairs'])} "
                     f"alternating pairs: median {dp['median_pct']} % end to end, "
                     f"{dp['median_step_pct']} % per step; over the {dp.get('steady_pairs')} pairs "
                     f"whose reads before and after agree within 10 %: "
                     f"{dp.get('steady_median_pct')} % / {dp.get('steady_median_step_pct')} %; "
                     "pairs (read GB/s, tok/s, %, per-step %, steady): "
                     + ", ".join(f"({q['read_GB_s']}, {q['tok_s']}, {q['pct']}, "
                                 f"{q['step_pct']}, {'y' if q.get('steady') else 'n'})"
                                 for q in dp["pairs"]))
    for name, pr in r.get("profile", {}).items():
        lines.append(f"\nprofile {name}: {pr['wall_ms_per_step (profiled)']} ms/step, matmuls "
                     f"{pr['matmul_ms_per_step']} ms ({100 * (pr['matmul_share'] or 0):.0f} % of "
                     f"self CPU time), matmul read {pr['matmul_read_GB_s']} GB/s; top: "
                     + ", ".join(f"{k} {v}" for k, v in pr["top_ops_ms_per_step"].items()))
    for name, kinds in r.get("matmul_by_kind", {}).items():
        if kinds:
            lines.append(f"\nprojections alone, {name} (ms per token, GB/s): " + ", ".join(
                f"{k} {v['ms']} ({v['GB_s']})" for k, v in kinds.items()))
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for decoding")
    ap.add_argument("--bw-threads", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--mib", type=int, default=512, help="size of each bandwidth test tensor")
    ap.add_argument("--bw-repeats", type=int, default=10)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=8,
                    help="alternating (read, C step) timings; 0 = none")
    ap.add_argument("--decode-pairs", type=int, default=6,
                    help="alternating (read, pack=True decode) timings; 0 = none")
    ap.add_argument("--profile-steps", type=int, default=16, help="0 = no profile")
    ap.add_argument("--out", default="benchmarks/results/bandwidth.json")
    args = ap.parse_args(argv)

    from lmlab.models import load_model, load_tokenizer

    tok = load_tokenizer(args.model)
    model = load_model(args.model, dtype=torch.float32, device="cpu").eval()
    t0 = time.perf_counter()
    r = {"model": args.model, "machine": f"{platform.machine()} {platform.processor() or ''} "
         f"{os.cpu_count()} cpus".replace("  ", " "), "torch": torch.__version__,
         "decode_threads": args.threads, "prompt": PROMPT, "new_tokens": args.new_tokens,
         "command": " ".join([Path(sys.executable).name] + sys.argv)}
    threads = sorted(set(args.bw_threads) | {args.threads})
    r["bandwidth"] = bandwidth(args.mib, threads, args.bw_repeats)
    r["weights_per_token"] = wb = bytes_per_token(model)
    torch.set_num_threads(args.threads)
    ids = chat_ids(tok, PROMPT)
    r["prompt_tokens"] = ids.shape[1]
    with torch.inference_mode():
        r["decode"] = decode_speed(model, tok, ids, args.new_tokens, args.repeats)
    # measured again after decoding (this machine's bandwidth moves within minutes): the bound
    # takes the best figure of either pass, the stricter one
    r["bandwidth_after"] = bandwidth(args.mib, [args.threads], args.bw_repeats)
    bw = r["bandwidth"]["tests"][args.threads]
    after = r["bandwidth_after"]["tests"][args.threads]
    best = max(bw["copy_GB_s (read+write)"], bw["read_sum_GB_s"],
               after["copy_GB_s (read+write)"], after["read_sum_GB_s"])
    bound = best * GB / wb["bytes"]
    r["bound"] = {"bandwidth_GB_s": best, "from": "max(copy, sum) at the decode thread count, "
                  "before and after decoding", "tok_s": round(bound, 2),
                  "tok_s_from_gemv_read": round(bw["read_gemv_GB_s"] * GB / wb["bytes"], 2)}
    for d in r["decode"].values():
        d["pct_of_bound"] = round(100 * d["tok_s"] / bound, 1)
        d["step_pct_of_bound"] = (round(100 * d["step_tok_s"] / bound, 1)
                                  if d["step_tok_s"] else None)
    with torch.inference_mode():
        if args.pairs:
            r["native_vs_read"] = native_vs_read(model, args.mib, args.pairs)
        if args.decode_pairs:
            r["decode_pairs"] = decode_pairs(model, ids, args.new_tokens, args.mib,
                                             args.decode_pairs)
        if args.profile_steps:
            proj = wb["parts_bytes"]["projections"] + wb["parts_bytes"]["lm_head"]
            r["profile"] = {name: profile_steps(model, ids, args.profile_steps, pack, proj)
                            for name, pack in (("ours", False), ("ours_packed", True))}
            r["matmul_by_kind"] = {name: matmul_by_kind(model, pack, args.repeats)
                                   for name, pack in (("F.linear", False), ("packed", True))}
    r["seconds"] = round(time.perf_counter() - t0, 1)
    print(table(r), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(r, indent=1) + "\n")
    print(f"\nwrote {args.out} ({r['seconds']} s)")
    return r


if __name__ == "__main__":
    main()
