"""The report's training-recipes section: curriculum vs random order, single-task vs mixed
training, and continual learning (task A and B accuracy after each phase). Every number is read
from the sft runs' summary.json (its ``recipe``, ``continual`` and ``eval_after`` keys); the
accuracy by difficulty from their samples.jsonl."""

from __future__ import annotations

from lmlab.report.collect import RunData
from lmlab.report.tables import Table


def _sft(runs: list[RunData]) -> list[RunData]:
    return [r for r in runs if r.stage == "sft" and r.summary]


def _acc(summary: dict, task: str) -> float | None:
    ev = summary.get("eval_after") or {}
    return ev.get(f"eval/heldout_accuracy/{task}", ev.get(f"eval/accuracy/{task}"))


def _tasks(runs: list[RunData]) -> list[str]:
    out: list[str] = []
    for r in runs:
        for key in (r.summary.get("eval_after") or {}):
            parts = key.split("/")
            if len(parts) == 3 and parts[2] not in out:
                out.append(parts[2])
    return out


def _task_runs(runs: list[RunData]) -> list[RunData]:
    """sft runs on built-in tasks without a continual block (those have their own table)."""
    return [r for r in _sft(runs) if str(r.config.get("data", "")).startswith("task:")
            and "continual" not in r.summary]


def curriculum_table(runs: list[RunData]) -> Table | None:
    runs = _task_runs(runs)
    if not any("curriculum" in (r.summary.get("recipe") or {}) for r in runs):
        return None
    tasks = _tasks(runs)
    t = Table("Curriculum vs random order (held-out phrasings)",
              ["run", "data", "order", "steps", "final loss", *tasks],
              ["text", "text", "text", "int", "num", *["pct"] * len(tasks)],
              note="order: random (curriculum=none) or scoring/pacing, easy -> hard; accuracy "
                   "on held-out phrasings (in-template where not measured) after training.")
    for r in runs:
        s, cur = r.summary, (r.summary.get("recipe") or {}).get("curriculum")
        order = f"{cur['scoring']} / {cur['pacing']}" if cur else "random"
        if "mixture" in (s.get("recipe") or {}):
            continue
        t.rows.append([r.label, r.config.get("data"), order, s.get("steps"), s.get("final_loss"),
                       *[_acc(s, k) for k in tasks]])
    return t


def curriculum_difficulty_table(runs: list[RunData]) -> Table | None:
    """Held-out accuracy per difficulty score (``task_difficulty``) of each curriculum-table
    run, from its samples.jsonl; None when no such run kept held-out samples."""
    from lmlab.data.curriculum import accuracy_by_difficulty

    runs = _task_runs(runs)
    if not any("curriculum" in (r.summary.get("recipe") or {}) for r in runs):
        return None
    runs = [r for r in runs if "mixture" not in (r.summary.get("recipe") or {})]
    per_run = [(r, accuracy_by_difficulty(r.samples)) for r in runs]
    buckets = sorted({(t, k) for _, acc in per_run for t, per in acc.items() for k in per})
    if not buckets:
        return None
    t = Table("Curriculum: held-out accuracy by difficulty",
              ["run", "order", *[f"{task} score {k:g}" for task, k in buckets]],
              ["text"] * (2 + len(buckets)),
              note="score: the task's difficulty from its parameters (data/curriculum.py "
                   "task_difficulty; compare: digits, +1 same digits, +1 within 10); cells: "
                   "accuracy (correct/n) of the held-out prompts with that score.")
    for r, acc in per_run:
        cur = (r.summary.get("recipe") or {}).get("curriculum")
        cells = []
        for task, k in buckets:
            c, n = acc.get(task, {}).get(k, (0, 0))
            cells.append(f"{100 * c / n:.0f}% ({c}/{n})" if n else "")
        t.rows.append([r.label, f"{cur['scoring']} / {cur['pacing']}" if cur else "random",
                       *cells])
    return t


def mixture_table(runs: list[RunData]) -> Table | None:
    runs = [r for r in _task_runs(runs) if "curriculum" not in (r.summary.get("recipe") or {})]
    if not any("mixture" in (r.summary.get("recipe") or {}) for r in runs):
        return None
    tasks = _tasks(runs)
    t = Table("Single-task vs mixed training (held-out phrasings, equal total steps)",
              ["run", "data", "mixing", "steps", *tasks],
              ["text", "text", "text", "int", *["pct"] * len(tasks)],
              note="mixing: the sampling probability of each source (weights or "
                   "p ~ n^(1/T)); replayed share after '+'.")
    for r in runs:
        s, rec = r.summary, r.summary.get("recipe") or {}
        mix = rec.get("mixture")
        mixing = ", ".join(f"{n.split(':', 1)[-1]} {p:.0%}"
                           for n, p in zip(mix["sources"], mix["probs"])) if mix else "single"
        if rec.get("replay"):
            mixing += f" + replay {rec['replay']['fraction']:.0%}"
        t.rows.append([r.label, r.config.get("data"), mixing, s.get("steps"),
                       *[_acc(s, k) for k in tasks]])
    return t


def continual_table(runs: list[RunData]) -> Table | None:
    rows = [r for r in _sft(runs) if r.summary.get("continual")]
    if not rows:
        return None
    t = Table("Continual learning: task A then task B (held-out phrasings)",
              ["run", "method", "A", "B", "A after A", "B after A", "A after B", "B after B",
               "A kept"],
              ["text", "text", "text", "text", "pct", "pct", "pct", "pct", "pct"],
              note="A kept = A's accuracy after phase B / after phase A (mean over A's tasks). "
                   "lora: one adapter per task, task A's prompts routed to A's adapter.")
    for r in rows:
        c = r.summary["continual"]
        a, b = c["tasks_a"], c["tasks_b"]

        def mean(d: dict, names: list[str]):
            vals = [d[n] for n in names if d.get(n) is not None]
            return sum(vals) / len(vals) if vals else None

        t.rows.append([r.label, c["method"], ", ".join(a), ", ".join(b),
                       mean(c["after_a"], a), mean(c["after_a"], b), mean(c["after_b"], a),
                       mean(c["after_b"], b), c.get("a_kept")])
    return t


def recipe_items(runs: list[RunData]) -> list:
    """Tables for the report's "Training recipes" section ([] without recipe runs)."""
    return [t for t in (curriculum_table(runs), curriculum_difficulty_table(runs),
                        mixture_table(runs), continual_table(runs)) if t]
