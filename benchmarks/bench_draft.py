"""Draft-model speculative decoding of the default model with a distilled student, with and
without oneDNN-packed weights (``lmlab.infer.packed``): plain greedy vs speculative, the same
prompts, plain and speculative timed alternately ``--repeats`` times each (best of each; the
machine's speed drifts by 10-20 % over minutes, so each row's ratio compares the same minutes;
a memory read timed before each run records the machine's level: plain greedy is bound by it,
speculative's checks by arithmetic, so their ratio is lowest when memory reads fastest).

    .venv/bin/python benchmarks/bench_draft.py --draft runs/distill-prune/final --threads 2
    .venv/bin/python benchmarks/bench_draft.py --draft runs/distill-prune/final --threads 2 \
        --pack yes --k 3 4 5 --draft-vocab 0 8192 16384 --draft-bf16 both

The draft is any same-tokenizer model reference (an ``lmlab distill`` run's ``final/``).
"""

from __future__ import annotations

import argparse
import json
import os

import torch
# (benchmarks/ is on sys.path when run as a script)
from bench_bandwidth import read_GB_s as read_bandwidth
from bench_generate import best_time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--draft", required=True)
    ap.add_argument("--tasks", default="convert,compare", help="built-in tasks giving prompts")
    ap.add_argument("--prompts", type=int, default=6)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--k", type=int, nargs="*", default=[2, 4])
    ap.add_argument("--draft-vocab", type=int, nargs="*", default=[0],
                    help="draft scores the first N ids + the prompt's (0 = whole vocabulary)")
    ap.add_argument("--pack", choices=["both", "yes", "no"], default="both")
    ap.add_argument("--draft-bf16", choices=["both", "yes", "no"], default="yes",
                    help="with --pack: the draft's native steps read bfloat16 weight copies")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--read-mib", type=int, default=256,
                    help="size of the memory read timed before each run (0 = none)")
    ap.add_argument("--out", default="runs/bench-generate/draft.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from lmlab.data.tasks import task_rows
    from lmlab.infer.decode import generate
    from lmlab.infer.sampling import SamplingParams
    from lmlab.infer.speculative import generate_speculative
    from lmlab.models import load_model, load_tokenizer

    tok = load_tokenizer(args.model)
    target, draft = load_model(args.model).eval(), load_model(args.draft).eval()
    names = args.tasks.split(",")
    rows = task_rows(names, "task", "test", -(-args.prompts // len(names)))
    prompts = [[{"role": "user", "content": r["prompt"]}] for r in rows][:args.prompts]
    p = SamplingParams(temperature=0.0, max_new_tokens=args.new_tokens)

    def best(fn):
        return best_time(fn, 1)

    src = torch.randn(args.read_mib * 2**20 // 4) if args.read_mib else None
    dst = torch.empty_like(src) if src is not None else None

    def read_GB_s():
        return round(read_bandwidth(src, dst), 2) if src is not None else None

    res = {"model": args.model, "draft": args.draft, "threads": args.threads,
           "torch": torch.__version__, "prompts": len(prompts), "rows": []}
    for pack in {"both": (False, True), "yes": (True,), "no": (False,)}[args.pack]:
        generate(target, tok, prompts[:1], p, batch_size=1, pack=pack)  # warm-up (and packing)
        bf16s = {"both": (False, True), "yes": (True,), "no": (False,)}[args.draft_bf16]
        for k, vocab, bf16 in [(k, v, b) for k in args.k for v in args.draft_vocab
                               for b in (bf16s if pack else (False,))]:
            kw = dict(draft=draft, num_draft_tokens=k, pack=pack, draft_vocab=vocab or None,
                      draft_bf16=bf16)
            generate_speculative(target, tok, prompts[:1], p, **kw)
            # plain and speculative alternate, so both see the machine at the same minutes;
            # a memory read before each says which level the machine was at (plain greedy is
            # bound by it, speculative's checks by arithmetic, so their ratio moves with it)
            t_plain, t_spec, reads = [], [], []
            for _ in range(args.repeats):
                reads.append(read_GB_s())
                t, plain = best(lambda: generate(target, tok, prompts, p, batch_size=1,
                                                 pack=pack))
                t_plain.append(t)
                reads.append(read_GB_s())
                t, spec = best(lambda: generate_speculative(target, tok, prompts, p, **kw))
                t_spec.append(t)
            same = all(a.token_ids == b.token_ids for a, b in zip(plain, spec.completions))
            row = {"pack": pack, "k": k, "draft_vocab": vocab, "draft_bf16": bf16,
                   "plain_s": round(min(t_plain), 3),
                   "spec_s": round(min(t_spec), 3), "speedup": round(min(t_plain) / min(t_spec), 3),
                   "plain_all_s": [round(t, 3) for t in t_plain],
                   "spec_all_s": [round(t, 3) for t in t_spec],
                   "read_GB_s_before": reads,  # plain 1, spec 1, plain 2, ...
                   "acceptance": round(spec.stats.acceptance_rate, 3),
                   "tokens_per_forward": round(spec.stats.tokens_per_forward, 2),
                   "identical": same}
            res["rows"].append(row)
            print(row, flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
