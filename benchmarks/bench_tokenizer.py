"""Tokenizer training and encoding speed: HF `tokenizers` (lmlab tokenizer's path) vs the
plain-Python twin (lmlab.scratch.bpe), same corpus, vocab and specials, side by side.

Targets (issue 25): the HF path trains >= 5 MB of text per second on 2 cores; the twin
finishes the Shakespeare corpus (4.5 MB) at a 1k vocab in under 2 minutes. Also measured:
encode MB/s of each (HF single-threaded and batched; the twin with a cold piece cache), and
that the twin's merges equal HF's. The HF path feeds the trainer ~16k-character pieces on every
core (lmlab.data.tokenizers.train); the same training on whole documents is timed beside it. Takes the shared heavy-work lock (/tmp/lmlab-heavy.lock) so
that nothing else runs beside it.

    .venv/bin/python benchmarks/bench_tokenizer.py                       # Shakespeare, 1k vocab
    .venv/bin/python benchmarks/bench_tokenizer.py --vocab 8192 --repeats 3
    .venv/bin/python benchmarks/bench_tokenizer.py --chars 20000 --vocab 300   # smoke
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
LOCK = "/tmp/lmlab-heavy.lock"
SPECIALS = ["<|endoftext|>"]


def _timed(fn, repeats: int):
    """(result of the last call, best wall seconds over ``repeats`` calls)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def bench(args) -> dict:
    from lmlab.data.corpora import train_heldout
    from lmlab.data.tokenizers import hf_encoder, train_bpe
    from lmlab.scratch import bpe

    texts, heldout = train_heldout(args.corpus, args.chars, args.heldout_chars)
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    held_mb = sum(len(t.encode("utf-8")) for t in heldout) / 1e6
    hf, hf_s = _timed(lambda: train_bpe(texts, args.vocab, SPECIALS), args.repeats)
    # the same training fed whole documents (before session 18: 42 Shakespeare documents, so
    # the two threads' shares were uneven); interleaving is left to the repeats
    whole, whole_s = _timed(lambda: train_bpe(texts, args.vocab, SPECIALS, piece_chars=0),
                            args.repeats)
    twin, twin_s = _timed(lambda: bpe.train(texts, args.vocab, SPECIALS), args.twin_repeats)
    merges = [tuple(m) for m in json.loads(hf.to_str())["model"]["merges"]]
    encode = hf_encoder(hf)
    _, hf_batch_s = _timed(lambda: encode(heldout), args.repeats)
    _, hf_one_s = _timed(lambda: [hf.encode(t, add_special_tokens=False) for t in heldout],
                         args.repeats)

    def twin_encode():
        twin._cache.clear()  # a cold cache, as for new text
        return [twin.encode(t) for t in heldout]

    twin_ids, twin_enc_s = _timed(twin_encode, 1)
    same_ids = twin_ids == encode(heldout)
    return {"corpus": args.corpus, "train_mb": mb, "heldout_mb": held_mb, "vocab": args.vocab,
            "hf": {"train_s": hf_s, "train_mb_s": mb / hf_s, "whole_docs_train_s": whole_s,
                   "whole_docs_same": whole.to_str() == hf.to_str(),
                   "encode_batch_mb_s": held_mb / hf_batch_s,
                   "encode_one_by_one_mb_s": held_mb / hf_one_s},
            "twin": {"train_s": twin_s, "train_mb_s": mb / twin_s,
                     "encode_mb_s": held_mb / twin_enc_s},
            "twin_merges_equal": twin.merges == merges, "twin_ids_equal": same_ids,
            "targets": {"hf_train_mb_s>=5": mb / hf_s >= 5, "twin_train_s<120": twin_s < 120}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", default="corpus:shakespeare",
                   help="corpus:<name>, files or globs (as lmlab tokenizer's data=)")
    p.add_argument("--vocab", type=int, default=1000)
    p.add_argument("--chars", type=int, default=None, help="train on at most this many chars")
    p.add_argument("--heldout-chars", type=int, default=500_000)
    p.add_argument("--repeats", type=int, default=3, help="HF timings: best of this many")
    p.add_argument("--twin-repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=0,
                   help="RAYON_NUM_THREADS for HF tokenizers (0 = its default, all cores)")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/tokenizer.json"))
    p.add_argument("--no-lock", action="store_true", help="smoke runs: skip the heavy lock")
    args = p.parse_args()
    if args.threads:
        os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    with open(os.devnull if args.no_lock else LOCK, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[bench] waiting for {LOCK} (another heavy run holds it)", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        res = bench(args)
    import tokenizers

    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "argv": sys.argv[1:],
              "env": {"python": sys.version.split()[0], "tokenizers": tokenizers.__version__,
                      "cpu": platform.processor() or platform.machine(),
                      "cores": os.cpu_count()},
              "results": res}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    h, t = res["hf"], res["twin"]
    print(f"corpus {res['corpus']}: {res['train_mb']:.2f} MB, vocab {res['vocab']}")
    print("| side | train s | train MB/s | encode MB/s |")
    print("|---|---|---|---|")
    print(f"| HF tokenizers | {h['train_s']:.2f} | {h['train_mb_s']:.2f} | "
          f"{h['encode_batch_mb_s']:.2f} (batch), {h['encode_one_by_one_mb_s']:.2f} (1 by 1) |")
    print(f"| HF, whole documents | {h['whole_docs_train_s']:.2f} | "
          f"{res['train_mb'] / h['whole_docs_train_s']:.2f} | (same tokenizer: "
          f"{h['whole_docs_same']}) |")
    print(f"| scratch twin | {t['train_s']:.2f} | {t['train_mb_s']:.3f} | "
          f"{t['encode_mb_s']:.3f} |")
    print(f"twin merges equal: {res['twin_merges_equal']}, ids equal: {res['twin_ids_equal']}; "
          f"targets: {res['targets']}")


if __name__ == "__main__":
    main()
