"""Which ~3x-smaller pruned shape of SmolLM2-135M starts closest to the teacher?

Forward-only: importance on 64 training task examples, then the mean per-token forward KL
(teacher || pruned student) on 64 held-out examples, before any distillation.
    .venv/bin/python dev/distill_prune_probe.py
"""
import time

import torch

from lmlab.data import collate, encode_rows, load_rows
from lmlab.losses.distill import forward_kl
from lmlab.losses.objectives import trained_positions
from lmlab.models import load_model, load_tokenizer
from lmlab.models.prune import PruneSpec, apply_plan, collect_importance, non_embedding_params, plan

REF = "smollm2-135m-instruct"
tok = load_tokenizer(REF)
teacher = load_model(REF).eval()
def batches(split, n):
    rows = load_rows("task:convert,compare", "task", split=split, limit=n)
    ex, _ = encode_rows(tok, rows, "task", 128)
    return [collate(ex[i:i + 8], tok.pad_token_id) for i in range(0, len(ex), 8)]
calib, held = batches("train", 64), batches("test", 64)
t0 = time.time()
imp = collect_importance(teacher, calib)
print(f"importance in {time.time() - t0:.1f}s; layer BI:", [round(float(x), 3) for x in imp.layers])
def kl(model):
    tot, n = 0.0, 0
    with torch.no_grad():
        for b in held:
            idx = trained_positions(b["labels"])
            inp = {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]}
            s = model(**inp, logits_to_keep=idx).logits
            t = teacher(**inp, logits_to_keep=idx).logits
            mask = b["labels"][:, idx + 1] != -100
            tot += float(forward_kl(s, t, mask=mask)); n += int(mask.sum())
    return tot / n
base = non_embedding_params(teacher)
for name, spec in [("depth 10", PruneSpec(layers=10)), ("depth 15 + mlp 768", PruneSpec(layers=15, mlp=768)),
                   ("depth 20 + heads 6 + mlp 512", PruneSpec(layers=20, heads=6, mlp=512)),
                   ("width: heads 3 + mlp 384", PruneSpec(heads=3, mlp=384)),
                   ("depth 15 + hidden 448 + mlp 1024", PruneSpec(layers=15, hidden=448, mlp=1024))]:
    m = apply_plan(teacher, plan(imp, spec, teacher.config)).eval()
    ne = non_embedding_params(m)
    print(f"{name:34s} non-emb {ne / 1e6:5.1f}M ({base / ne:.2f}x)  KL {kl(m):.3f} nats/token", flush=True)
