"""Shared bits for loop tests: random token examples and a plain right-padding collate."""

import torch

from lmlab.train.config import TrainConfig


def random_examples(n=16, seed=0, vocab=200, lo=6, hi=14):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        t = int(torch.randint(lo, hi, (1,), generator=g))
        ids = torch.randint(3, vocab, (t,), generator=g).tolist()
        labels = [-100] * (t // 2) + ids[t // 2:]  # train the second half only
        out.append({"input_ids": ids, "labels": labels})
    return out


def pad_collate(examples, pad_id=2):
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id)
    labels = torch.full((len(examples), width), -100)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def config(tmp_path, **kw):
    base = dict(model="tiny:llama", output_dir=str(tmp_path / "run"), max_steps=3, lr=1e-2,
                warmup_steps=0, schedule="constant", batch_size=4, grad_accum=1, progress=False,
                save_every=0)
    base.update(kw)
    return TrainConfig(**base)
