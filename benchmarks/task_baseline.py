"""Base accuracy of the default model on every built-in task (held-out prompts, greedy).

    .venv/bin/python benchmarks/task_baseline.py                # 30 test prompts per task
    .venv/bin/python benchmarks/task_baseline.py --n 50 --tasks add,sort --show 3

Decoding: the chat template with add_generation_prompt=True, HF ``generate`` greedy,
max_new_tokens 16, batches with left padding (``lmlab.eval.tasks.greedy_complete``); each
completion is scored by the task's own ``check`` (``lmlab.data.tasks.score``). Prints one line per
task, a few completions per task (to see whether misses are format or value), and a Markdown
table for docs/tasks.md.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402


def main() -> None:
    from lmlab.data.tasks import examples, score, task_names
    from lmlab.eval.tasks import greedy_complete
    from lmlab.models import DEFAULT_MODEL, load_model, load_tokenizer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--tasks", default="all", help="comma-separated task names, or all")
    ap.add_argument("--n", type=int, default=30, help="test prompts per task")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--batch", type=int, default=30)
    ap.add_argument("--show", type=int, default=4, help="completions printed per task")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    names = task_names() if args.tasks == "all" else args.tasks.split(",")
    tok, model = load_tokenizer(args.model), load_model(args.model)
    table = []
    for name in names:
        rows = examples(name, "test", args.n, args.seed)
        t0 = time.perf_counter()
        outs = greedy_complete(model, tok, [r["prompt"] for r in rows],
                               max_new_tokens=args.max_new_tokens, batch_size=args.batch)
        secs = time.perf_counter() - t0
        s = score(name, outs, [r["answer"] for r in rows])
        table.append((name, s, secs))
        print(f"{name:8s} accuracy {s['accuracy']:.3f} ({s['correct']}/{s['n']}) "
              f"mean reward {s['mean_reward']:.3f}  [{secs:.1f}s]", flush=True)
        for r, o in list(zip(rows, outs))[:args.show]:
            print(f"    {r['prompt']!r}\n      want {r['answer']!r}  got {o!r}")
    print(f"\nmodel {args.model}, {args.n} test prompts per task, seed {args.seed}, greedy, "
          f"max_new_tokens {args.max_new_tokens}\n")
    print("| task | base accuracy | correct / n |\n|---|---|---|")
    for name, s, _ in table:
        print(f"| {name} | {s['accuracy']:.2f} | {s['correct']} / {s['n']} |")


if __name__ == "__main__":
    main()
