"""Prompt lookup's drafting, replayed: how many target checks each drafter setting needs for the
default model's greedy outputs on the input-grounded prompts, with no timing at all.

Greedy speculative decoding emits exactly plain greedy's tokens, so once those are known every
round of a lookup run follows from the drafter alone: it proposes from the text so far, the
check keeps the drafts that equal the next greedy tokens and adds the one after them. Counting
the rounds gives the checks a setting needs (fewer is faster: each check is one forward of
the target), and the tokens drafted per check say how large those forwards are. The rounds are
``speculative_decode``'s (``lmlab.infer.speculative.replay_rounds``, tested against it), but
the replay takes seconds instead of minutes and does not depend on the machine's speed.

    .venv/bin/python benchmarks/bench_lookup_replay.py --k 3 5 7 10

Writes a JSON of the rounds per prompt, setting and k (``--out``) and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
# (benchmarks/ is on sys.path when run as a script)
from bench_generate import GROUNDED, MODEL, chat_ids

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--k", type=int, nargs="*", default=[3, 5, 7, 10])
    ap.add_argument("--max-ngram", type=int, nargs="*", default=[3])
    ap.add_argument("--new-tokens", type=int, default=160)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--out", default="runs/bench-generate/lookup_replay.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from lmlab.infer.decode import decode
    from lmlab.infer.sampling import SamplingParams
    from lmlab.infer.speculative import PromptLookup, replay_rounds
    from lmlab.models import load_model, load_tokenizer

    tok = load_tokenizer(args.model)
    model = load_model(args.model, dtype=torch.float32).eval()
    p = SamplingParams(temperature=0, max_new_tokens=args.new_tokens)
    settings = [(n, prefer) for n in args.max_ngram for prefer in PromptLookup.PREFER]
    rows, totals = [], {}
    with torch.inference_mode():
        for prompt in GROUNDED:
            ids, _ = chat_ids(tok, [prompt])
            out = decode(model, ids, None, p, pack=True).tokens[0]
            row = {"prompt": prompt[-60:], "prompt_tokens": ids.shape[1], "new_tokens": len(out)}
            for n, prefer in settings:
                for k in args.k:
                    r = replay_rounds(ids[0].tolist(), out, PromptLookup(n, prefer=prefer), k,
                                      args.new_tokens)
                    row[f"n{n}_{prefer}_k{k}"] = r
                    t = totals.setdefault(f"n{n}_{prefer}_k{k}", {"checks": 0, "drafted": 0,
                                                                "accepted": 0})
                    for key in t:
                        t[key] += r[key]
            rows.append(row)
            print(row["prompt"][-40:].replace("\n", " "), len(out), "tokens:",
                  " ".join(f"{key}={v['checks']}" for key, v in row.items()
                           if isinstance(v, dict)), flush=True)
    print("\nchecks over all prompts (drafted tokens per check):")
    for key, t in totals.items():
        print(f"  {key:18s} {t['checks']:5d}  ({t['drafted'] / t['checks']:.2f})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"model": args.model, "rows": rows, "totals": totals},
                                         indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
