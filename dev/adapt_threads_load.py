"""Greedy decode of SmolLM2 at 2 threads, the thread choice (lmlab.infer.threads) on vs off
(LMLAB_ADAPT_THREADS), alternating in one process, 128 new tokens a row a run: tok/s (all
rows) and whether the tokens agree. Batch 1 runs the greedy C calls; a batch of several rows
(the third argument; copies of the prompt) runs one batched C step a token, as ``serve`` and
sampling do. Run it idle, and with a busy process beside it:

    OMP_NUM_THREADS=2 .venv/bin/python dev/adapt_threads_load.py bf16 3
    (timeout 300 python3 -c 'while 1: pass' &); OMP_NUM_THREADS=2 .venv/bin/python \
        dev/adapt_threads_load.py int8 2 4
"""
import os
import sys
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from lmlab.infer.decode import decode
from lmlab.infer.sampling import SamplingParams
from lmlab.models import load_model, load_tokenizer

torch.set_num_threads(2)
tok = load_tokenizer("smollm2-135m-instruct")
model = load_model("smollm2-135m-instruct", dtype=torch.float32).eval()
batch = int(sys.argv[3]) if len(sys.argv) > 3 else 1
ids = tok("Write a short story about a robot learning to paint.", return_tensors="pt").input_ids
ids = ids.repeat(batch, 1)
p = SamplingParams(temperature=0, max_new_tokens=128, ignore_eos=True)
w = sys.argv[1] if len(sys.argv) > 1 else "bf16"
res = {"0": [], "1": []}
toks = {}
for r in range(int(sys.argv[2]) if len(sys.argv) > 2 else 3):
    for a in ("0", "1"):
        os.environ["LMLAB_ADAPT_THREADS"] = a
        t = time.perf_counter()
        d = decode(model, ids, None, p, pack=w)
        res[a].append(128 * batch / (time.perf_counter() - t))
        toks.setdefault(a, d.tokens)
print(w, f"batch {batch}", "fixed 2 threads tok/s", [round(x, 1) for x in res["0"]])
print(w, f"batch {batch}", "adaptive tok/s", [round(x, 1) for x in res["1"]])
print("same tokens", toks["0"] == toks["1"])
