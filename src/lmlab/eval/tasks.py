"""Held-out accuracy on built-in tasks: greedy completions scored by each task's checker."""

from __future__ import annotations

import torch



@torch.no_grad()
def greedy_complete(model, tokenizer, prompts: list[str], *, max_new_tokens: int = 16,
                    batch_size: int = 16) -> list[str]:
    """Greedy chat completions for user prompts, batched with left padding."""
    from lmlab.data.chat import encode_prompt

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    outs: list[str] = []
    for i in range(0, len(prompts), batch_size):
        ids = [encode_prompt(tokenizer, p) for p in prompts[i:i + batch_size]]
        width = max(map(len, ids))
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=device)
        out = model.generate(input_ids=input_ids, attention_mask=mask, do_sample=False,
                             max_new_tokens=max_new_tokens, pad_token_id=pad)
        outs += tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    if was_training:
        model.train()
    return outs


def task_accuracy(model, tokenizer, task_names: list[str], *, n: int = 50, seed: int = 0,
                  max_new_tokens: int = 16) -> tuple[dict[str, float], list[dict]]:
    """Accuracy per task on ``n`` test-split prompts, and the scored samples."""
    from lmlab.data.tasks import examples, get_task

    acc, samples = {}, []
    for name in task_names:
        task = get_task(name)
        rows = examples(name, "test", n, seed)
        outs = greedy_complete(model, tokenizer, [r["prompt"] for r in rows],
                               max_new_tokens=max_new_tokens)
        ok = [task.check(o, r["answer"]) for o, r in zip(outs, rows)]
        acc[name] = sum(ok) / max(1, len(ok))
        samples += [{"task": name, "prompt": r["prompt"], "answer": r["answer"],
                     "completion": o, "correct": c} for r, o, c in zip(rows, outs, ok)]
    return acc, samples
