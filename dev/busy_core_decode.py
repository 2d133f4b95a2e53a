"""SmolLM2 greedy decode of 128 tokens at torch's thread count, fixed (LMLAB_ADAPT_THREADS=0
unless set), three runs in one process: tok/s of the second and third, for docs/hardware.md
"A busy core". Run it under different OpenMP waits, idle or with a busy process beside:

    OMP_NUM_THREADS=2 .venv/bin/python dev/busy_core_decode.py int8
    OMP_NUM_THREADS=2 GOMP_SPINCOUNT=10000 .venv/bin/python dev/busy_core_decode.py bf16
"""
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LMLAB_ADAPT_THREADS", "0")
import torch

from lmlab.infer.decode import decode
from lmlab.infer.sampling import SamplingParams
from lmlab.models import load_model, load_tokenizer

tok = load_tokenizer("smollm2-135m-instruct")
model = load_model("smollm2-135m-instruct", dtype=torch.float32).eval()
w = sys.argv[1] if len(sys.argv) > 1 else "bf16"
ids = tok("Write a short story about a robot learning to paint.", return_tensors="pt").input_ids
p = SamplingParams(temperature=0, max_new_tokens=128, ignore_eos=True)
out = []
for _ in range(3):
    t = time.perf_counter()
    decode(model, ids, None, p, pack=w)
    out.append(round(128 / (time.perf_counter() - t), 1))
print(w, os.environ.get("GOMP_SPINCOUNT", "unset"), out[1:])
