"""Held-out accuracy on built-in tasks: greedy completions scored by each task's checker.

Three evaluation splits per task (``lmlab.data.tasks.EVAL_SPLITS``), none ever trained on:
``test`` (in-template: the training phrasings and number range, prompts held out by hash),
``heldout`` (phrasings never used for training) and ``range`` (larger numbers, longer lists; the
decode budget grows by ``RANGE_EXTRA_TOKENS`` since the answers are longer). Every accuracy
carries a 95% bootstrap interval and its n; a stage that measures before and after on the same
prompts also gets the paired gain with its interval (``lmlab.eval.intervals``).

Summary keys a training stage writes (``task_summary``)::

    "task_eval_before" / "task_eval_after": {split: {task | "mean": {"accuracy", "n",
                                              "correct", "ci95"}}}
    "task_gain": {split: {task | "mean": {"before", "after", "gain", "n", "ci95"}}}

and the flat numbers (``flat_metrics``) ``eval/accuracy`` (in-template mean),
``eval/accuracy/<task>``, ``eval/heldout_accuracy[/<task>]``, ``eval/range_accuracy[/<task>]``.
"""

from __future__ import annotations

import torch

from lmlab.eval.intervals import N_BOOT, accuracy, paired_gain

RANGE_EXTRA_TOKENS = 8  # 6-number lists and 4-digit sums need more tokens than the 4-number ones
COT_EXTRA_TOKENS = 16  # cot: decode budget = the longest reference working + this
METRIC = {"test": "accuracy", "heldout": "heldout_accuracy", "range": "range_accuracy"}


@torch.no_grad()
def greedy_complete(model, tokenizer, prompts: list[str], *, max_new_tokens: int = 16,
                    batch_size: int = 16, pack: bool | str = False) -> list[str]:
    """Greedy chat completions for user prompts with our KV-cache decode loop (``pack``: see
    ``lmlab.infer.decode.stream_tokens``)."""
    from lmlab.infer.decode import generate
    from lmlab.infer.sampling import SamplingParams

    was_training = model.training
    model.eval()
    params = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens)
    chats = [[{"role": "user", "content": p}] for p in prompts]
    outs = [c.text for c in generate(model, tokenizer, chats, params, batch_size=batch_size,
                                     pack=pack)]
    if was_training:
        model.train()
    return outs


def split_problems(splits) -> list[str]:
    """Config problems with a list of eval splits (for a stage's validate())."""
    from lmlab.data.tasks import EVAL_SPLITS

    bad = [x for x in splits if x not in EVAL_SPLITS]
    if bad or not splits:
        return [f"eval_splits: expected some of {', '.join(EVAL_SPLITS)}, got "
                f"{', '.join(map(str, bad)) or 'none'}"]
    return []


def split_budget(split: str, max_new_tokens: int) -> int:
    return max_new_tokens + (RANGE_EXTRA_TOKENS if split == "range" else 0)


def task_accuracy(model, tokenizer, task_names: list[str], *, n: int = 50, seed: int = 0,
                  max_new_tokens: int = 16, split: str = "test", pack: bool | str = False,
                  cot: bool = False) -> tuple[dict[str, float], list[dict]]:
    """Accuracy per task on ``n`` prompts of ``split`` (default: in-template test prompts),
    and the scored samples (with their ``split``). Tasks without that split are left out.
    ``pack``: see ``greedy_complete``. ``cot``: the same questions asking for the working
    (``lmlab.data.tasks.cot``), a budget that fits the reference working, the final line scored
    by the strict checker."""
    from lmlab.data.tasks import examples, get_task, has_split
    from lmlab.data.tasks.cot import cot_check, cot_example

    acc, samples = {}, []
    for name in task_names:
        if not has_split(name, split):
            continue
        task = get_task(name)
        rows = examples(name, split, n, seed)
        budget = split_budget(split, max_new_tokens)
        check = task.check
        if cot:
            rows = [cot_example(name, r) for r in rows]
            budget = max(budget, COT_EXTRA_TOKENS + max(
                (len(tokenizer(r["rationale"])["input_ids"]) for r in rows), default=0))
            check = lambda c, a, t=task: cot_check(t, c, a)
        outs = greedy_complete(model, tokenizer, [r["prompt"] for r in rows],
                               max_new_tokens=budget, pack=pack)
        ok = [check(o, r["answer"]) for o, r in zip(outs, rows)]
        acc[name] = sum(ok) / max(1, len(ok))
        samples += [{"task": name, "split": split, "prompt": r["prompt"], "answer": r["answer"],
                     "completion": o, "correct": c} for r, o, c in zip(rows, outs, ok)]
    return acc, samples


def measure(model, tokenizer, task_names: list[str], *, n: int = 50, seed: int = 0,
            max_new_tokens: int = 16, splits=None, cot: bool = False) -> dict:
    """``{"flags": {split: {task: [correct, ...]}}, "samples": [...]}`` on every eval split
    (``cot``: show-your-work prompts, see ``task_accuracy``)."""
    from lmlab.data.tasks import EVAL_SPLITS

    flags: dict = {}
    samples: list[dict] = []
    for split in splits or EVAL_SPLITS:
        _, got = task_accuracy(model, tokenizer, task_names, n=n, seed=seed,
                               max_new_tokens=max_new_tokens, split=split, cot=cot)
        for x in got:
            flags.setdefault(split, {}).setdefault(x["task"], []).append(bool(x["correct"]))
        samples += got
    return {"flags": flags, "samples": samples}


def _pooled(per_task: dict[str, list]) -> list:
    return [f for fl in per_task.values() for f in fl]


def summarize(flags: dict, *, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """{split: {task | "mean": accuracy dict}}; "mean" pools the tasks' prompts (equal n per
    task, so it equals the mean of the tasks' accuracies) with its own interval."""
    out = {}
    for split, per_task in flags.items():
        out[split] = {t: accuracy(f, n_boot=n_boot, seed=seed) for t, f in per_task.items()}
        out[split]["mean"] = accuracy(_pooled(per_task), n_boot=n_boot, seed=seed)
    return out


def gains(before: dict, after: dict, *, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """{split: {task | "mean": paired gain dict}} for flags measured on the same prompts."""
    out = {}
    for split, per_task in after.items():
        old = before.get(split) or {}
        out[split] = {t: paired_gain(old[t], f, n_boot=n_boot, seed=seed)
                      for t, f in per_task.items() if len(old.get(t, [])) == len(f)}
        if len(out[split]) == len(per_task):
            out[split]["mean"] = paired_gain(_pooled(old), _pooled(per_task), n_boot=n_boot,
                                             seed=seed)
    return out


def flat_metrics(flags: dict) -> dict[str, float]:
    """The flat numbers logged per evaluation (eval/accuracy is the in-template mean)."""
    out = {}
    for split, per_task in flags.items():
        key = "eval/" + METRIC[split]
        pooled = _pooled(per_task)
        out[key] = sum(pooled) / max(1, len(pooled))
        out.update({f"{key}/{t}": sum(f) / max(1, len(f)) for t, f in per_task.items()})
    return out


def task_summary(before: dict | None, after: dict, *, seed: int = 0) -> dict:
    """The summary.json keys for a stage that measured ``after`` (and maybe ``before``)."""
    out = {"task_eval_after": summarize(after["flags"], seed=seed)}
    if before is not None:
        out["task_eval_before"] = summarize(before["flags"], seed=seed)
        out["task_gain"] = gains(before["flags"], after["flags"], seed=seed)
    return out


def report_tasks(before: dict | None, after: dict, *, seed: int = 0,
                 what: str | None = None) -> dict:
    """``task_summary``'s keys, printed as the lines every training stage shows at its end: a
    header naming the pair (``what``, default "before -> after" or "after"), then
    ``accuracy_lines``."""
    from lmlab.common import print0

    out = task_summary(before, after, seed=seed)
    what = what or ("before -> " if before is not None else "") + "after"
    print0(f"[lmlab] task accuracy {what} (greedy; 95% bootstrap CI):")
    for line in accuracy_lines(out["task_eval_after"], out.get("task_gain"),
                               out.get("task_eval_before")):
        print0("[lmlab] " + line)
    return out


def pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def ci_text(ci) -> str:
    return "" if not ci else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def accuracy_lines(summary: dict, gain: dict | None = None, before: dict | None = None
                   ) -> list[str]:
    """One line per eval split: per task (before ->) after with its 95% CI and n, and the
    mean gain with its CI when measured before and after."""
    from lmlab.data.tasks import SPLIT_LABELS

    lines = []
    for split, per_task in summary.items():
        cells = []
        for t, a in per_task.items():
            if t == "mean":
                continue
            b = ((before or {}).get(split) or {}).get(t)
            cells.append(f"{t} {pct(b['accuracy']) + ' -> ' if b else ''}"
                         f"{pct(a['accuracy'])}{ci_text(a['ci95'])} (n={a['n']})")
        g = ((gain or {}).get(split) or {}).get("mean")
        if g:
            cells.append(f"mean gain {100 * g['gain']:+.1f} pts{ci_text(g['ci95'])}")
        lines.append(f"  {SPLIT_LABELS.get(split, split):<17} " + "; ".join(cells))
    return lines
