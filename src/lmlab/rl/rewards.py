"""Reward functions for the online stages, one signature for all:
``fn(rows, texts, response_ids, finish) -> list[float]``, one reward per sequence.

- ``task``: the built-in task's ``reward`` (``lmlab.data.tasks``; 1.0 when the checker holds);
  the row names its task (``row["task"]``, or the default task of the stage).
- ``format``: 1.0 when the reply ended on its own (EOS, not cut by max_new_tokens) and has the
  *shape* of the answer: digit runs read as ``0``, letter runs as ``a``, so ``936`` and ``12``
  match, ``7, 19, 42, 83`` matches any four comma-separated numbers, ``{"answer": 71}`` matches
  any such JSON, and ``The answer is 936.`` does not match ``936``.
- ``model``: a trained reward model (``lmlab reward``), scored on the chat-formatted pair.
- ``token:<id>``: the number of times token ``id`` occurs in the response (a toy reward for
  tests and demonstrations).

``combine`` returns the weighted sum and every component (logged separately).
"""

from __future__ import annotations

import re
from typing import Callable

RewardFn = Callable[[list[dict], list[str], list[list[int]], list[str]], list[float]]

_DIGITS, _LETTERS = re.compile(r"\d+"), re.compile(r"[A-Za-z]+")
END_MARKERS = ("<|im_end|>", "<|endoftext|>", "<|im_start|>", "</s>", "<|eot_id|>")


def shape(text: str) -> str:
    """``"The 12 cats."`` -> ``"a 0 a."``."""
    return _LETTERS.sub("a", _DIGITS.sub("0", clean(text)))


def task_reward(default_task: str | None = None) -> RewardFn:
    from lmlab.data.tasks import get_task

    def fn(rows, texts, response_ids, finish):
        out = []
        for row, text in zip(rows, texts):
            name = row.get("task") or default_task
            if name is None:
                raise ValueError("the task reward needs a 'task' field on each row "
                                 "(or data=task:<one task>)")
            out.append(float(get_task(name).reward(text, row["answer"])))
        return out
    return fn


def format_reward(rows, texts, response_ids, finish) -> list[float]:
    return [float(f == "eos" and shape(t) == shape(r.get("answer", "")) and bool(t.strip()))
            for r, t, f in zip(rows, texts, finish)]


def token_count_reward(token_id: int) -> RewardFn:
    def fn(rows, texts, response_ids, finish):
        return [float(sum(1 for x in ids if x == token_id)) for ids in response_ids]
    return fn


def clean(text: str) -> str:
    """The reply as the reward model saw replies in training: cut at the first end-of-turn
    marker, stripped (a sampled reply can contain template markers or trailing spaces that
    would not survive the chat template)."""
    for m in END_MARKERS:
        text = text.split(m, 1)[0]
    return text.strip()


def model_reward(reward_model, batch_size: int = 16) -> RewardFn:
    """Scores of a ``RewardModel`` (``lmlab.models.heads.load_reward_model``)."""
    def fn(rows, texts, response_ids, finish):
        return reward_model.score([r["prompt"] for r in rows], [clean(t) for t in texts],
                                  batch_size=batch_size)
    return fn


def combine(fns: dict[str, RewardFn], weights: dict[str, float], rows, texts, response_ids,
            finish) -> tuple[list[float], dict[str, list[float]]]:
    """(weighted sum per sequence, {name: rewards})."""
    parts = {name: fn(rows, texts, response_ids, finish) for name, fn in fns.items()}
    total = [sum(weights[n] * parts[n][i] for n in parts) for i in range(len(rows))]
    return total, parts


def build_rewards(names: list[str], *, reward_model: str = "", default_task: str | None = None,
                  device="cpu", dtype=None) -> dict[str, RewardFn]:
    """Reward functions by config name: task, format, model, token:<id>."""
    from lmlab.errors import ConfigError

    fns: dict[str, RewardFn] = {}
    for name in names:
        if name == "task":
            fns[name] = task_reward(default_task)
        elif name == "format":
            fns[name] = format_reward
        elif name == "model":
            if not reward_model:
                raise ConfigError("rewards: 'model' needs reward_model=<reward run folder>")
            import torch

            from lmlab.models.heads import load_reward_model

            rm = load_reward_model(reward_model, dtype=dtype or torch.float32, device=device)
            fns[name] = model_reward(rm)
        elif name.startswith("token:") and name[6:].isdigit():
            fns[name] = token_count_reward(int(name[6:]))
        else:
            raise ConfigError(f"rewards: unknown reward '{name}' (known: task, format, model, "
                              f"token:<id>)")
    return fns
