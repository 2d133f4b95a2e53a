"""The task protocol, the registry, seeded train/test splits and rows in lmlab's formats."""

from __future__ import annotations

import hashlib
import random
from typing import Protocol

from lmlab.data.tasks.arith import ADD, COMPARE, CONVERT, SORT, SUB
from lmlab.data.tasks.style import CONCISE, POSITIVE
from lmlab.data.tasks.text import JSON, REVERSE
from lmlab.errors import UserError

# train: training rows. Evaluation only: test (in-template: the training phrasings and range,
# prompts held out by hash), heldout (held-out phrasings), range (numbers or lists beyond the
# training range). See phrasing.py.
SPLITS = ("train", "test", "heldout", "range")
EVAL_SPLITS = ("test", "heldout", "range")
SPLIT_LABELS = {"test": "in-template", "heldout": "held-out template", "range": "out-of-range"}
ROW_KINDS = ("task", "chat", "preference", "text")
DEFAULT_N = {"train": 1000, "test": 100, "heldout": 100, "range": 100}
TEST_EVERY = 10  # one prompt in ten (by hash) is held out
_MIN_DRAWS = 2000  # draws before giving up on a split, plus 50 per requested example


class Task(Protocol):
    """A verifiable task: a seeded generator and one definition of "correct" for eval and RL.

    ``example(rng, variant="train")`` -> ``{"prompt", "answer"}``; ``answer`` is the canonical
    reply; ``variant`` is "train" or one of ``variants`` ("heldout": held-out phrasings,
    "range": beyond the training range), which are drawn only for evaluation.
    ``check(completion, answer)`` -> is the completion correct (whitespace and text after an
    end-of-turn marker are ignored; each task documents what it extracts).
    ``reward(completion, answer)`` -> 1.0 when ``check`` holds, else below 1.0 (0.0, or a small
    documented credit for the right format).
    ``wrong_answer(example, rng)`` -> a plausible wrong reply in the answer's format, for which
    ``check`` is False (the rejected side of preference pairs).
    """

    name: str
    description: str
    variants: tuple[str, ...]

    def example(self, rng: random.Random, variant: str = "train") -> dict: ...

    def check(self, completion: str, answer: str) -> bool: ...

    def reward(self, completion: str, answer: str) -> float: ...

    def wrong_answer(self, example: dict, rng: random.Random) -> str: ...


TASKS: dict[str, Task] = {t.name: t for t in (ADD, SUB, COMPARE, CONVERT, SORT, REVERSE, JSON)}
# Style tasks (a rule measures them; see style.py): named explicitly, not part of "all".
STYLE_TASKS: dict[str, Task] = {t.name: t for t in (CONCISE, POSITIVE)}


def task_names() -> list[str]:
    return list(TASKS)


def get_task(name: str) -> Task:
    if name in STYLE_TASKS:
        return STYLE_TASKS[name]
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)} (or 'all'), "
                        f"style tasks: {', '.join(STYLE_TASKS)}")
    return TASKS[name]


def split_of(prompt: str) -> str:
    """'test' for one prompt in TEST_EVERY, chosen by a stable hash of its text, else 'train'.

    A prompt's split depends on nothing but its text, so no seed, n or generator change can
    move a held-out prompt into training.
    """
    digest = hashlib.sha1(prompt.encode("utf-8")).digest()
    return "test" if int.from_bytes(digest[:8], "big") % TEST_EVERY == 0 else "train"


def has_split(name: str, split: str) -> bool:
    """Whether task ``name`` can draw ``split`` (every task has train and test)."""
    return split in ("train", "test") or split in getattr(get_task(name), "variants", ())


def examples(name: str, split: str, n: int, seed: int = 0) -> list[dict]:
    """``n`` distinct examples of task ``name`` from ``split``, the same for the same arguments.

    train / test: drawn from one stream of the ``train`` variant seeded by (task, seed) and kept
    when their prompt hashes to ``split``. heldout / range: a stream of that variant seeded by
    (task, split, seed); never used for training. A smaller ``n`` gives a prefix of a larger one.
    """
    task = get_task(name)
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if not isinstance(n, int) or n < 0:
        raise UserError(f"n must be a non-negative integer, got {n!r}")
    if not has_split(name, split):
        raise UserError(f"task {name!r} has no {split!r} split (it has train, test"
                        f"{''.join(', ' + v for v in getattr(task, 'variants', ()))})")
    hashed = split in ("train", "test")
    variant = "train" if hashed else split
    rng = random.Random(f"lmlab.tasks:{task.name}:{seed}" if hashed
                        else f"lmlab.tasks:{task.name}:{split}:{seed}")
    out: list[dict] = []
    seen: set[str] = set()
    for _ in range(_MIN_DRAWS + 50 * n):
        if len(out) == n:
            return out
        ex = task.example(rng, variant) if variant != "train" else task.example(rng)
        if ex["prompt"] not in seen and (not hashed or split_of(ex["prompt"]) == split):
            seen.add(ex["prompt"])
            out.append(ex)
    if len(out) == n:
        return out
    raise UserError(f"task {name!r} has too few distinct {split} prompts for n={n} "
                    f"(found {len(out)}); ask for fewer")


def _expand(names: list[str] | str) -> list[str]:
    names = [names] if isinstance(names, str) else list(names)
    out: list[str] = []
    for name in names:
        for one in (task_names() if name == "all" else [name]):
            if one not in out:
                out.append(get_task(one).name)
    if not out:
        raise UserError("no task names given; known tasks: " + ", ".join(TASKS))
    return out


def _row(name: str, kind: str, ex: dict, wrong_rng: random.Random) -> dict:
    prompt, answer = ex["prompt"], ex["answer"]
    if kind == "task":
        return {"prompt": prompt, "answer": answer, "task": name}
    if kind == "chat":
        return {"messages": [{"role": "user", "content": prompt},
                             {"role": "assistant", "content": answer}], "task": name}
    if kind == "preference":
        return {"prompt": prompt, "chosen": answer,
                "rejected": get_task(name).wrong_answer(ex, wrong_rng), "task": name}
    return {"text": prompt + "\n" + answer}


def task_rows(names: list[str], kind: str, split: str, n: int | None = None,
              seed: int = 0) -> list[dict]:
    """Rows of ``kind`` for the tasks ``names`` ("all" = every task), ``n`` per task (default
    1000 for train, 100 for test), interleaved task by task: a, b, a, b, ...

    kinds: task ``{prompt, answer, task}``; chat ``{messages, task}``; preference
    ``{prompt, chosen, rejected, task}`` (rejected = ``wrong_answer``); text ``{text}``.
    """
    if kind not in ROW_KINDS:
        raise UserError(f"unknown row kind {kind!r} for tasks; expected one of "
                        f"{', '.join(ROW_KINDS)}")
    names = _expand(names)
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    n = DEFAULT_N[split] if n is None else n
    per_task = {name: examples(name, split, n, seed) for name in names}
    wrong_rngs = {name: random.Random(f"lmlab.tasks.wrong:{name}:{split}:{seed}")
                  for name in names}
    return [_row(name, kind, per_task[name][i], wrong_rngs[name])
            for i in range(n) for name in names]


def score(name_or_task: str | Task, completions: list[str], answers: list[str]) -> dict:
    """``{"accuracy", "n", "correct", "mean_reward"}`` of completions against answers."""
    task = get_task(name_or_task) if isinstance(name_or_task, str) else name_or_task
    if len(completions) != len(answers):
        raise UserError(f"score: {len(completions)} completions but {len(answers)} answers")
    correct = sum(task.check(c, a) for c, a in zip(completions, answers))
    rewards = [task.reward(c, a) for c, a in zip(completions, answers)]
    n = len(answers)
    return {"accuracy": correct / n if n else 0.0, "n": n, "correct": correct,
            "mean_reward": sum(rewards) / n if n else 0.0}
