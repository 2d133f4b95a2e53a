"""Held-out accuracy on built-in tasks: greedy completions scored by each task's checker."""

from __future__ import annotations

import torch


@torch.no_grad()
def greedy_complete(model, tokenizer, prompts: list[str], *, max_new_tokens: int = 16,
                    batch_size: int = 16) -> list[str]:
    """Greedy chat completions for user prompts with our KV-cache decode loop."""
    from lmlab.infer.decode import generate
    from lmlab.infer.sampling import SamplingParams

    was_training = model.training
    model.eval()
    params = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens)
    chats = [[{"role": "user", "content": p}] for p in prompts]
    outs = [c.text for c in generate(model, tokenizer, chats, params, batch_size=batch_size)]
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
