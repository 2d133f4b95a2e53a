"""Decoding speed: our KV-cache loop vs HF ``generate``, speculative speed-ups.

On demand, not a test. Timings alternate ours / HF and report the best of ``--repeats`` runs
(the minimum time: on a CPU shared with other jobs the median swings by 30 % between runs,
the minimum much less), and the median beside it for the headline numbers.

    .venv/bin/python benchmarks/bench_generate.py                 # everything, ~10 min on 2 cores
    .venv/bin/python benchmarks/bench_generate.py --only greedy1 lookup --new-tokens 32

Sections: ``greedy1`` (batch-1 greedy tok/s and time to first token), ``greedy8`` (batch-8
aggregate tok/s), ``lookup`` (prompt-lookup speculative decoding on input-grounded prompts vs
plain greedy vs HF ``prompt_lookup_num_tokens``: end to end, and after the first token, since
the prefill is the same work in both), ``draft`` (draft-model speculative decoding
with a truncated copy of the model as the draft), ``strategies`` (tok/s and distinct-2 of each
strategy on the same prompts). The memory-bandwidth bound has its own script,
``bench_bandwidth.py``.
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

MODEL = "smollm2-135m-instruct"
QUESTIONS = ["What is the capital of France?", "Write a haiku about the sea.",
             "Explain photosynthesis in one sentence.", "Give three tips for learning Python.",
             "What is 17 times 3?", "Name a famous painter and one of their works.",
             "Why is the sky blue?", "Describe a cat to someone who has never seen one."]
PARAGRAPH = (
    "The Great Barrier Reef is the world's largest coral reef system, composed of over 2,900 "
    "individual reefs and 900 islands stretching for over 2,300 kilometres over an area of "
    "approximately 344,400 square kilometres. The reef is located in the Coral Sea, off the "
    "coast of Queensland, Australia. It can be seen from outer space and is the world's "
    "biggest single structure made by living organisms. This reef structure is composed of and "
    "built by billions of tiny organisms, known as coral polyps. It supports a wide diversity "
    "of life and was selected as a World Heritage Site in 1981.")
PARAGRAPH2 = (
    "Marie Curie was born in Warsaw in 1867 and moved to Paris in 1891 to study physics and "
    "mathematics at the Sorbonne. In 1903 she shared the Nobel Prize in Physics with Pierre Curie "
    "and Henri Becquerel for their work on radioactivity. In 1911 she received a second Nobel "
    "Prize, this time in Chemistry, for the discovery of the elements polonium and radium. She "
    "founded the Curie Institute in Paris and died in 1934 at the age of 66.")
CODE = '''def summarize(scores):
    total = 0
    count = 0
    for name, value in scores.items():
        if value is None:
            continue
        total += value
        count += 1
    average = total / count if count else 0.0
    best = max(scores, key=lambda k: scores[k] or 0)
    return {"total": total, "count": count, "average": average, "best": best}'''
# input-grounded prompts for prompt lookup: the first two are the ones measured since the
# lookup bench began; --lookup-prompts says how many of these run (bench_lookup_replay.py
# replays all of them)
GROUNDED = [f"{PARAGRAPH}\n\nRepeat the paragraph above word for word.",
            f"{PARAGRAPH}\n\nCopy every sentence of the paragraph above that mentions a number.",
            (f"{CODE}\n\nRename the variable total to running_sum in the code above and return "
             "the whole function."),
            f"{PARAGRAPH2}\n\nRepeat the paragraph above word for word.",
            (f"{PARAGRAPH2}\n\nList every year mentioned in the paragraph above, with the "
             "sentence it appears in."),
            f"{CODE}\n\nAdd a docstring to the function above and return the whole function.",
            f"{PARAGRAPH}\n\nRewrite the paragraph above, replacing 'reef' with 'Reef'."]


def best_time(fn, repeats: int) -> tuple[float, object]:
    """(minimum wall time over ``repeats`` calls, the last result)."""
    times, out = [], None
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times), out


DEVICE = "cpu"


def chat_ids(tok, questions):
    from lmlab.infer.decode import encode_prompts, left_pad

    return left_pad(encode_prompts(tok, [[{"role": "user", "content": q}] for q in questions]),
                    tok.pad_token_id, DEVICE)


# ----------------------------------------------------------------------------- sections


def greedy(model, tok, args, batch: int) -> dict:
    from lmlab.infer.decode import decode, stream_tokens
    from lmlab.infer.sampling import SamplingParams

    ids, mask = chat_ids(tok, (QUESTIONS * 2)[:batch])
    N = args.new_tokens
    p = SamplingParams(temperature=0, max_new_tokens=N, min_new_tokens=N)  # = HF min_new_tokens
    ours_t, hf_t, same = [], [], True
    for _ in range(args.repeats):
        t, d = best_time(lambda: decode(model, ids, mask, p), 1)
        ours_t.append(t)
        t, h = best_time(lambda: model.generate(
            input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=N,
            min_new_tokens=N, pad_token_id=tok.pad_token_id), 1)
        hf_t.append(t)
        same &= d.tokens == h[:, ids.shape[1]:].tolist()
    ttft = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        next(iter(stream_tokens(model, ids, mask, p)))
        ttft.append(time.perf_counter() - t0)
    o, h = min(ours_t), min(hf_t)
    om, hm = statistics.median(ours_t), statistics.median(hf_t)
    return {"batch": batch, "new_tokens": N, "prompt_tokens": int(mask.sum(-1).max()),
            "ours_tok_s": round(batch * N / o, 2), "hf_tok_s": round(batch * N / h, 2),
            "speedup_vs_hf": round(h / o, 3),
            "ours_tok_s_median": round(batch * N / om, 2),
            "hf_tok_s_median": round(batch * N / hm, 2),
            "ours_ttft_ms": round(1000 * min(ttft), 1), "same_tokens": same}


def lookup(model, tok, args) -> dict:
    from lmlab.infer.decode import decode
    from lmlab.infer.sampling import SamplingParams
    from lmlab.infer.speculative import PromptLookup, speculative_decode

    N = args.lookup_tokens
    p = SamplingParams(temperature=0, max_new_tokens=N)
    first = SamplingParams(temperature=0, max_new_tokens=1)  # the prefill: time to first token
    rows = []
    for prompt in GROUNDED[:args.lookup_prompts]:
        ids, _ = chat_ids(tok, [prompt])
        base_t, base = best_time(lambda: decode(model, ids, None, p), args.repeats)
        ttft, _ = best_time(lambda: decode(model, ids, None, first), args.repeats)
        ttft_hf, _ = best_time(lambda: model.generate(
            input_ids=ids, do_sample=False, max_new_tokens=1, pad_token_id=tok.pad_token_id),
            args.repeats)
        n_new = len(base.tokens[0])
        row = {"prompt": prompt[-60:], "prompt_tokens": ids.shape[1], "new_tokens": n_new,
               "greedy_tok_s": round(n_new / base_t, 2), "ttft_ms": round(1000 * ttft, 1),
               "hf_ttft_ms": round(1000 * ttft_hf, 1)}
        for k in args.lookup_k:
            t, o = best_time(lambda: speculative_decode(model, ids, p, drafter=PromptLookup(3),
                                                          num_draft_tokens=k), args.repeats)
            row[f"ours_k{k}_speedup"] = round(base_t / t, 2)
            # after the first token: what the drafts change (the prefill is the same work)
            row[f"ours_k{k}_decode_speedup"] = round((base_t - ttft) / (t - ttft), 2)
            row[f"ours_k{k}_accept"] = round(o.stats.acceptance_rate, 3)
            row[f"ours_k{k}_mean_accepted"] = round(o.stats.mean_accepted, 2)
            row[f"ours_k{k}_same"] = o.tokens == base.tokens[0]
            t_hf, h = best_time(lambda: model.generate(
                input_ids=ids, do_sample=False, max_new_tokens=N, prompt_lookup_num_tokens=k,
                pad_token_id=tok.pad_token_id), args.repeats)
            row[f"hf_k{k}_speedup"] = round(base_t / t_hf, 2)
            row[f"hf_k{k}_decode_speedup"] = round((base_t - ttft) / (t_hf - ttft_hf), 2)
            row[f"hf_k{k}_same"] = h[0, ids.shape[1]:].tolist() == base.tokens[0]
        if args.pack:  # oneDNN-packed weights and the C step: greedy and lookup, the same
            # minutes: each round times the prefill, greedy, then each k (this machine's memory
            # speed moves between levels from minute to minute; plain greedy follows it, lookup
            # less)
            runs = {"ttft": [], "greedy": [], **{k: [] for k in args.lookup_k}}
            outs = {}
            decode(model, ids, None, first, pack=True)  # untimed: packs the weights (once)
            for _ in range(args.repeats):
                t, _ = best_time(lambda: decode(model, ids, None, first, pack=True), 1)
                runs["ttft"].append(t)
                t, outs["greedy"] = best_time(lambda: decode(model, ids, None, p, pack=True), 1)
                runs["greedy"].append(t)
                for k in args.lookup_k:
                    t, outs[k] = best_time(lambda: speculative_decode(
                        model, ids, p, drafter=PromptLookup(3), num_draft_tokens=k,
                        pack=True), 1)
                    runs[k].append(t)
            pt, pf = min(runs["greedy"]), min(runs["ttft"])
            row["packed_ttft_ms"] = round(1000 * pf, 1)
            row["packed_greedy_speedup"] = round(base_t / pt, 2)
            row["packed_greedy_same"] = outs["greedy"].tokens == base.tokens
            for k in args.lookup_k:
                t = min(runs[k])
                ratios = sorted(g / x for g, x in zip(runs["greedy"], runs[k]))
                after = sorted((g - f) / (x - f) for g, x, f in
                               zip(runs["greedy"], runs[k], runs["ttft"]))
                row[f"packed_k{k}_speedup"] = round(base_t / t, 2)  # vs unpacked greedy
                row[f"packed_k{k}_vs_packed_greedy"] = round(pt / t, 2)
                row[f"packed_k{k}_vs_packed_greedy_rounds"] = [round(r, 2) for r in ratios]
                row[f"packed_k{k}_decode_vs_packed_greedy"] = round((pt - pf) / (t - pf), 2)
                row[f"packed_k{k}_decode_vs_packed_greedy_rounds"] = [round(r, 2) for r in after]
                row[f"packed_k{k}_same"] = outs[k].tokens == base.tokens[0]
        rows.append(row)
    # geometric means over the prompts of every speed-up column
    cols = [c for c in rows[0] if "speedup" in c or c.endswith("vs_packed_greedy")]
    summary = {c: round(statistics.geometric_mean([r[c] for r in rows]), 2) for c in cols}
    return {"rows": rows, "geomean": summary}


def draft(model, tok, args) -> dict:
    """A truncated copy (first ``--draft-layers`` layers) as the draft: exact output, and the
    speed-up a draft of that cost gets at its (low, untrained) acceptance rate."""
    import copy

    from lmlab.infer.decode import decode
    from lmlab.infer.sampling import SamplingParams
    from lmlab.infer.speculative import DraftModel, speculative_decode

    d = copy.deepcopy(model)
    d.model.layers = d.model.layers[:args.draft_layers]
    d.config.num_hidden_layers = args.draft_layers
    ids, _ = chat_ids(tok, [QUESTIONS[2]])
    p = SamplingParams(temperature=0, max_new_tokens=args.new_tokens, ignore_eos=True)
    base_t, base = best_time(lambda: decode(model, ids, None, p), args.repeats)
    t, o = best_time(lambda: speculative_decode(model, ids, p, drafter=DraftModel(d),
                                                  num_draft_tokens=3), args.repeats)
    return {"draft_layers": args.draft_layers, "speedup": round(base_t / t, 2),
            "acceptance_rate": round(o.stats.acceptance_rate, 3),
            "mean_accepted": round(o.stats.mean_accepted, 2), "same": o.tokens == base.tokens[0]}


def distinct2(texts: list[str]) -> float:
    grams = [tuple(t.split()[i:i + 2]) for t in texts for i in range(len(t.split()) - 1)]
    return round(len(set(grams)) / max(1, len(grams)), 3)


def strategies(model, tok, args) -> dict:
    from lmlab.infer.decode import generate
    from lmlab.infer.sampling import SamplingParams
    from lmlab.infer.search import best_of_n, generate_beam, generate_contrastive

    prompts = [[{"role": "user", "content": q}] for q in QUESTIONS[:4]]
    N = args.new_tokens
    runs = {
        "greedy": lambda: generate(model, tok, prompts, SamplingParams(temperature=0,
                                                                       max_new_tokens=N)),
        "sample T=0.7 top_p=0.9": lambda: generate(model, tok, prompts, SamplingParams(
            temperature=0.7, top_p=0.9, max_new_tokens=N, seed=0)),
        "sample min_p=0.1": lambda: generate(model, tok, prompts, SamplingParams(
            min_p=0.1, max_new_tokens=N, seed=0)),
        "beam 4": lambda: generate_beam(model, tok, prompts, num_beams=4,
                                        params=SamplingParams(max_new_tokens=N)),
        "contrastive a=0.6 k=4": lambda: generate_contrastive(
            model, tok, prompts, params=SamplingParams(max_new_tokens=N)),
        "best-of-4 (longest)": lambda: [r.best for r in best_of_n(
            model, tok, prompts, 4, lambda p, c: len(c), SamplingParams(
                temperature=0.7, max_new_tokens=N, seed=0))],
    }
    out = {}
    for name, fn in runs.items():
        t, comps = best_time(fn, 1)
        n_tok = sum(len(c.token_ids) for c in comps)
        out[name] = {"seconds": round(t, 2), "tok_s_returned": round(n_tok / t, 2),
                     "distinct2": distinct2([c.text for c in comps]),
                     "first": comps[0].text[:80]}
    return out


SECTIONS = {"greedy1": lambda m, t, a: greedy(m, t, a, 1),
            "greedy8": lambda m, t, a: greedy(m, t, a, 8),
            "lookup": lookup, "draft": draft, "strategies": strategies}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--only", nargs="*", choices=list(SECTIONS), default=list(SECTIONS))
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--lookup-tokens", type=int, default=160)
    ap.add_argument("--lookup-k", type=int, nargs="*", default=[3, 10])
    ap.add_argument("--lookup-prompts", type=int, default=2, choices=range(1, len(GROUNDED) + 1),
                    metavar=f"1..{len(GROUNDED)}",
                    help="lookup section: how many of the input-grounded prompts (default 2)")
    ap.add_argument("--draft-layers", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pack", action="store_true",
                    help="lookup section: also measure oneDNN-packed weights (pack=True)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--out", default="runs/bench-generate/generate.json")
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    global DEVICE
    DEVICE = args.device

    from lmlab.common import pick_dtype
    from lmlab.models import load_model, load_tokenizer

    tok = load_tokenizer(args.model)
    model = load_model(args.model, dtype=pick_dtype(args.dtype, torch.device(args.device)),
                       device=args.device).eval()
    gpu = f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""
    result = {"model": args.model, "machine": f"{platform.machine()} {os.cpu_count()} cpus, "
              f"{args.threads} torch threads{gpu}, {args.dtype}", "torch": torch.__version__,
              "command": " ".join([Path(sys.executable).name] + sys.argv)}
    for name in args.only:
        t0 = time.perf_counter()
        with torch.inference_mode():
            result[name] = SECTIONS[name](model, tok, args)
        print(f"## {name} ({time.perf_counter() - t0:.0f} s)\n{json.dumps(result[name], indent=1)}",
              flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
