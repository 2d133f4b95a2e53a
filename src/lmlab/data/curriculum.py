"""Curriculum learning: a difficulty score per row and a sampler that goes easy -> hard.

Difficulty comes from the task's own parameters (``task_difficulty``: digits and carries of a
sum, list disorder, word length) or from the initial model's loss on the row (``loss_scores``,
a pre-pass before training). ``competence(step)`` (Platanios et al. 2019, "Competence-based
curriculum learning") is the fraction of the rows, easiest first, that step ``step`` may draw
from; ``CurriculumStream`` draws each micro-batch uniformly from that prefix.

Every micro-batch is a pure function of (seed, micro-batch index), so the data position is one
integer (``state_dict() == {"calls": n}``) and a resumed run draws exactly what an uninterrupted
one would.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable

import torch

PACINGS = ("linear", "root", "step")
SCORES = ("none", "params", "loss")


# --- difficulty from task parameters -------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", text)]


def _carries(a: int, b: int) -> int:
    """Column carries in a + b (347 + 589: 7+9, 4+8+1, 3+5+1 -> 3)."""
    carry = n = 0
    while a or b:
        carry = 1 if a % 10 + b % 10 + carry >= 10 else 0
        n += carry
        a, b = a // 10, b // 10
    return n


def _borrows(a: int, b: int) -> int:
    """Column borrows in a - b for a >= b (734 - 289: 4-9, 2-8 -> 2)."""
    borrow = n = 0
    while a or b:
        borrow = 1 if a % 10 - b % 10 - borrow < 0 else 0
        n += borrow
        a, b = a // 10, b // 10
    return n


def _inversions(values: list[int]) -> int:
    return sum(1 for i in range(len(values)) for j in range(i + 1, len(values))
               if values[i] > values[j])


def task_difficulty(task: str, prompt: str, answer: str) -> float:
    """A difficulty score for one built-in task row, from the parameters its generator drew.

    add: digits of the larger operand + carries; sub: digits + borrows; compare: digits, +1
    when both numbers use the same digits (482 / 428), +1 when they differ by 10 or less;
    convert: digits of the answer; sort: inversions in the list (0: already sorted) + the
    list's length; reverse: letters; json: the operands' digits + carries (or borrows).
    Higher is harder; scores compare rows of one task (mixtures rank within each task's scale).
    """
    nums = _ints(prompt)
    if task in ("add", "sub") and len(nums) >= 2:
        a, b = nums[0], nums[1]
        steps = _carries(a, b) if task == "add" else _borrows(max(a, b), min(a, b))
        return float(len(str(max(a, b))) + steps)
    if task == "compare" and len(nums) >= 2:
        a, b = nums[0], nums[1]
        return float(len(str(max(a, b))) + (sorted(str(a)) == sorted(str(b)))
                     + (abs(a - b) <= 10))
    if task == "convert":
        return float(len(answer.strip()))
    if task == "sort":
        return float(_inversions(nums) + len(nums))
    if task == "reverse":
        return float(len(answer.strip()))
    if task == "json":
        m = re.search(r"(\d+) ([+-]) (\d+)", prompt)
        if m:
            a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
            steps = _carries(a, b) if op == "+" else _borrows(a, b)
            return float(len(str(a)) + len(str(b)) + steps)
    return float(len(prompt))  # style tasks and anything unparsed: longer is harder


def accuracy_by_difficulty(samples: list[dict], split: str = "heldout"
                           ) -> dict[str, dict[float, tuple[int, int]]]:
    """{task: {score: (correct, n)}} of eval ``samples`` (sft's samples.jsonl rows: task,
    split, prompt, answer, correct) of one ``split``, each scored by ``task_difficulty``;
    scores in increasing order. Splits beyond the training range score on their own scale."""
    out: dict[str, dict[float, list[int]]] = {}
    for x in samples:
        if x.get("split") != split or "task" not in x:
            continue
        score = task_difficulty(x["task"], x["prompt"], str(x.get("answer", "")))
        cell = out.setdefault(x["task"], {}).setdefault(score, [0, 0])
        cell[0] += bool(x["correct"])
        cell[1] += 1
    return {t: {k: (c[0], c[1]) for k, c in sorted(per.items())} for t, per in out.items()}


# --- difficulty from the model's own loss ------------------------------------------------------


@torch.no_grad()
def loss_scores(model, examples: list, collate: Callable[[list], dict], batch_size: int = 8,
                progress: bool = False) -> list[float]:
    """Mean next-token loss of each example's trained tokens under ``model`` (no gradient):
    the rows the initial model finds hardest score highest."""
    from lmlab.losses.lm import IGNORE

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: list[float] = []
    starts = range(0, len(examples), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="curriculum: scoring rows", unit="batch")
    for s in starts:
        batch = {k: v.to(device) for k, v in collate(examples[s:s + batch_size]).items()}
        labels = batch.pop("labels")
        logits = model(**batch, use_cache=False).logits.float()  # (B, T, V)
        targets = labels[:, 1:]  # (B, T-1)
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)), targets.reshape(-1),
            ignore_index=IGNORE, reduction="none").view(targets.shape)
        n = (targets != IGNORE).sum(1).clamp(min=1)
        out += (nll.sum(1) / n).tolist()
    model.train(was_training)
    return out


# --- pacing and the sampler -------------------------------------------------------------------


def competence(step: int, total: int, pacing: str = "linear", start: float = 0.2,
               ramp: float = 0.8, stages: int = 4) -> float:
    """Fraction of the rows (easiest first) open at optimizer step ``step`` of ``total``.

    It grows from ``start`` at step 0 to 1.0 at step ``ramp * total`` and stays there.
    linear: start + (1 - start) t; root: sqrt(start^2 + (1 - start^2) t) (faster early, as in
    Platanios et al.); step: ``stages`` equal plateaus, start, ..., 1.0. t = step / (ramp*total).
    """
    if pacing not in PACINGS:
        raise ValueError(f"unknown pacing {pacing!r}; expected one of {', '.join(PACINGS)}")
    t = min(1.0, step / max(1.0, ramp * total))
    if pacing == "linear":
        c = start + (1.0 - start) * t
    elif pacing == "root":
        c = math.sqrt(start * start + (1.0 - start * start) * t)
    else:
        level = min(stages - 1, math.floor(t * stages)) if stages > 1 else stages - 1
        c = start + (1.0 - start) * level / max(1, stages - 1)
    return min(1.0, c)


def easy_first(scores: list[float], seed: int = 0) -> list[int]:
    """Example indices sorted by score, ties in a seeded random order (not the file order)."""
    g = torch.Generator().manual_seed(seed * 100_003 + 17)
    tie = torch.randperm(len(scores), generator=g).tolist()
    return sorted(range(len(scores)), key=lambda i: (scores[i], tie[i]))


class CurriculumStream:
    """Micro-batches drawn from the easiest ``competence(step)`` share of the examples.

    Micro-batch ``k`` (step ``k // grad_accum``) is ``world * batch_size`` distinct indices
    drawn uniformly from the open prefix by ``random.Random((seed, k))``; rank ``r`` takes the
    r-th slice. The prefix never holds fewer than one global batch.
    """

    def __init__(self, examples: list, scores: list[float], batch_size: int,
                 collate: Callable[[list], dict], *, total_steps: int, grad_accum: int = 1,
                 pacing: str = "linear", start: float = 0.2, ramp: float = 0.8, stages: int = 4,
                 seed: int = 0, rank: int = 0, world: int = 1):
        from lmlab.train.data import clamp_batch_size

        if len(scores) != len(examples):
            raise ValueError(f"{len(scores)} scores for {len(examples)} examples")
        batch_size, note = clamp_batch_size(len(examples), batch_size, world)
        if note:
            from lmlab.common import print0

            print0(note)
        self.examples, self.batch_size, self.collate = examples, batch_size, collate
        self.order = easy_first(scores, seed)
        self.total, self.accum = total_steps, grad_accum
        self.pacing = {"pacing": pacing, "start": start, "ramp": ramp, "stages": stages}
        self.seed, self.rank, self.world = seed, rank, world
        self.calls = 0

    def open_rows(self, step: int) -> int:
        n, gb = len(self.examples), self.batch_size * self.world
        return min(n, max(gb, math.ceil(competence(step, self.total, **self.pacing) * n)))

    def indices(self, k: int) -> list[int]:
        """The example indices of global micro-batch ``k`` (every rank's, in order)."""
        rng = random.Random(f"lmlab.curriculum:{self.seed}:{k}")
        picks = rng.sample(range(self.open_rows(k // self.accum)), self.batch_size * self.world)
        return [self.order[i] for i in picks]

    def next(self) -> dict:
        idx = self.indices(self.calls)[self.rank * self.batch_size:
                                       (self.rank + 1) * self.batch_size]
        self.calls += 1
        return self.collate([self.examples[i] for i in idx])

    def state_dict(self) -> dict:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        self.calls = int(state["calls"])
