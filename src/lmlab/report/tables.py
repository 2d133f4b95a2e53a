"""The report's tables, as plain data: every number is copied from a run folder's files.

A ``Table`` holds raw values and a kind per column; ``fmt`` turns a value into the text both the
HTML and the markdown show, so the two always agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from lmlab.report.collect import BenchFile, RunData

MISSING = "–"


@dataclass
class Table:
    title: str
    columns: list[str]
    kinds: list[str]  # per column: text | pct | num | int | sec
    rows: list[list] = field(default_factory=list)
    note: str = ""
    row_kinds: list[str] | None = None  # per row, for every column but the first (transposed)

    def kind(self, row: int, col: int) -> str:
        return self.row_kinds[row] if self.row_kinds and col > 0 else self.kinds[col]


def fmt(value, kind: str = "num") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if kind == "acc":  # an accuracy, with its 95% interval and n when the run recorded them
        return _acc_text(value)
    if kind == "text" or isinstance(value, str) or isinstance(value, bool):
        return str(value)
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "sec":
        return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"
    if value == 0 or isinstance(value, int):
        return str(value)
    mag = abs(value)
    if mag >= 1000:
        return f"{value:,.0f}"
    if mag >= 0.01:
        return f"{value:.4g}"
    return f"{value:.3g}"


def _acc_text(value) -> str:
    if not isinstance(value, dict):
        return fmt(value, "pct")
    text = fmt(value.get("accuracy", value.get("value")), "pct")
    ci, n = value.get("ci95"), value.get("n")
    if ci:
        text += f" [{100 * ci[0]:.1f}–{100 * ci[1]:.1f}]"
    return text + (f" n={n}" if n else "")


def acc_value(cell):
    """The accuracy of a table cell: a number, or a dict with "accuracy" (and "ci95", "n")."""
    return cell.get("accuracy", cell.get("value")) if isinstance(cell, dict) else cell


def _mean(xs):
    xs = [x for x in xs if isinstance(x, (int, float)) and not isinstance(x, bool)]
    return sum(xs) / len(xs) if xs else None


# --- reading each stage's headline numbers --------------------------------------------------


def task_accuracy(run: RunData) -> tuple[dict, dict, int | None]:
    """(before, after, prompts per task) held-out task accuracy from a training summary."""
    s = run.summary or {}

    def per_task(d) -> dict:
        if not isinstance(d, dict):
            return {}
        if any(k.startswith("eval/accuracy/") for k in d):
            return {k.removeprefix("eval/accuracy/"): v for k, v in d.items()
                    if k.startswith("eval/accuracy/")}
        return {k: v for k, v in d.items() if isinstance(v, (int, float))}

    if "task_accuracy_after" in s or "task_accuracy_before" in s:  # dpo
        before, after = s.get("task_accuracy_before"), s.get("task_accuracy_after")
        n = run.config.get("task_eval_n")
    elif run.stage == "distill":  # input model = the teacher
        before, after = s.get("teacher_accuracy"), s.get("student_accuracy")
        n = run.config.get("eval_n")
    elif any(str(k).startswith("eval/accuracy/") for k in (s.get("eval_after") or {})):
        before, after = s.get("eval_before"), s.get("eval_after")  # sft, grpo, ppo
        n = run.config.get("task_eval_n") or run.config.get("eval_n")
    else:
        return {}, {}, None
    return per_task(before), per_task(after), n


SPLIT_LABELS = {"test": "in-template", "heldout": "held-out template", "range": "out-of-range"}


def task_splits(run: RunData) -> tuple[dict, dict, dict]:
    """(before, after, gain): {split: {task | "mean": cell}} from a training summary. Runs from
    before the held-out splits have only "test" (in-template) numbers, without intervals."""
    s = run.summary or {}
    if isinstance(s.get("task_eval_after"), dict):
        return (s.get("task_eval_before") or {}, s["task_eval_after"], s.get("task_gain") or {})
    before, after, n = task_accuracy(run)
    return ({"test": _counted(before, n)} if before else {}), \
        ({"test": _counted(after, n)} if after else {}), {}


def _counted(per_task: dict, n) -> dict:
    """Accuracies recorded as bare numbers, as cells with the interval their count gives (the
    bootstrap of a 0/1 mean depends only on k and n), when n prompts per task is known."""
    from lmlab.eval.intervals import accuracy

    if not isinstance(n, int) or n <= 0:
        return per_task
    flags = {t: [True] * round(v * n) + [False] * (n - round(v * n))
             for t, v in per_task.items() if isinstance(v, (int, float)) and 0 <= v <= 1}
    out = {t: accuracy(f) for t, f in flags.items()}
    if out:
        out["mean"] = accuracy([x for f in flags.values() for x in f])
    return out


def split_mean(per_task: dict | None):
    """The mean accuracy of one split's cells (its recorded "mean", else the tasks' mean)."""
    if not per_task:
        return None
    if "mean" in per_task:
        return acc_value(per_task["mean"])
    return _mean(acc_value(v) for v in per_task.values())


def _pts(x: float) -> str:
    return f"{100 * x:+.1f} pts"


def _ci_pts(ci) -> str:
    return f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else "[–]"


def _delta(before, after, kind="pct") -> str:
    if before is None or after is None:
        return fmt(after, kind)
    word = "improved" if after > before else ("no change" if after == before else "worse")
    return f"{fmt(before, kind)} → {fmt(after, kind)} ({word})"


def headline(run: RunData) -> str:
    """One line of what the run measured, with before → after where the stage measured both."""
    s = run.summary
    if s is None:
        return "not finished (no summary.json)"
    parts = []
    before, after, _ = task_splits(run)
    for split, per_task in after.items():
        what = "task accuracy" if split == "test" else f"{SPLIT_LABELS.get(split, split)}"
        parts.append(f"{what} {_delta(split_mean(before.get(split)), split_mean(per_task))}")
    if run.stage == "reward":
        b = (s.get("eval_before") or {}).get("eval/accuracy")
        a = (s.get("eval_after") or {}).get("eval/accuracy")
        if a is not None:
            parts.append(f"pairwise accuracy {_delta(b, a)}")
    if run.stage == "dpo":
        a = (s.get("eval_after") or {}).get("eval/rewards/accuracy")
        if a is not None:
            parts.append(f"reward accuracy {fmt(a, 'pct')}")
        kl = (s.get("kl") or {}).get("kl/token")
        if kl is not None:
            parts.append(f"KL/token {fmt(kl)}")
    if s.get("reward_last") is not None:  # grpo, ppo: mean rollout reward, first -> last update
        parts.append(f"rollout reward {_delta(s.get('reward_first'), s['reward_last'], 'num')}")
        if s.get("kl_last") is not None:
            parts.append(f"KL {fmt(s['kl_last'])}")
    if run.stage == "generate":
        w = s.get("decode_weights")
        parts.append(f"{fmt(s.get('tokens_per_s'))} tok/s"
                     + (f" ({w} weights)" if w not in (None, "fp32") else ""))
        if s.get("accuracy") is not None:
            parts.append(f"accuracy {fmt(s['accuracy'], 'pct')}")
    if run.stage == "evaluate":
        parts.append(f"{len(run.evals)} models evaluated")
    if run.stage == "bench" and s.get("greedy_tokens_per_s") is not None:
        parts.append(f"greedy {fmt(s['greedy_tokens_per_s'])} tok/s")
    if run.stage == "bench" and s.get("best_tokens_per_s") is not None:  # what=serve
        vs = f" ({fmt(s['best_vs_hf'])}x HF sequential)" if s.get("best_vs_hf") else ""
        parts.append(f"served {fmt(s['best_tokens_per_s'])} tok/s with "
                     f"{s.get('best_clients')} clients{vs}")
    if not parts:  # a stage this report does not know yet: its top-level numbers
        keys = [k for k, v in s.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                and any(w in k for w in ("accuracy", "reward", "kl", "loss", "perplexity"))]
        parts = [f"{k} {fmt(s[k])}" for k in keys[:4]]
    return "; ".join(parts) or MISSING


def model_name(ref: str, runs: list[RunData]) -> str:
    """A run folder reference as that run's label (``sft``), anything else as given."""
    key = _model_key(ref)
    return next((r.label for r in runs if str(r.path.resolve()) == key), ref)


def runs_table(runs: list[RunData]) -> Table:
    t = Table("Runs", ["run", "stage", "input model", "method", "steps", "final loss",
                       "what it measured"], ["text", "text", "text", "text", "int", "num", "text"])
    for r in runs:
        s = r.summary or {}
        method = " ".join(str(x) for x in (s.get("loss") if r.stage == "dpo" else None,
                                           s.get("method") or r.config.get("method")
                                           or r.config.get("strategy")
                                           or r.config.get("algo")) if x)
        models = r.config.get("models") if r.stage == "evaluate" else None
        model = ", ".join(model_name(m, runs) for m in (models or [r.model]))
        if r.stage == "agent":  # no language model: the agent's input is its environment
            model = str(s.get("env") or r.config.get("env") or MISSING)
        t.rows.append([r.label, r.stage, model, method or MISSING, s.get("steps"),
                       s.get("final_loss"), headline(r)])
    return t


# --- model comparison -----------------------------------------------------------------------


def _model_key(ref: str) -> str:
    p = Path(ref)
    if p.is_dir():
        p = p.resolve()
        return str(p.parent if p.name == "final" else p)
    return ref


def task_comparison(runs: list[RunData]) -> Table | None:
    """One row per model (the base model and every trained run) and eval split with task
    accuracy as the training stages measured it (before = their input model, after = their
    output): in-template, held-out template and out-of-range prompts, each with its 95%
    interval and n where the run recorded them."""
    by_path = {str(r.path.resolve()): r for r in runs}
    models: dict[str, dict] = {}
    tasks: list[str] = []
    ns = set()

    def add(key: str, label: str, splits: dict, source: str):
        m = models.setdefault(key, {"label": label, "acc": {}, "sources": []})
        for split, per_task in splits.items():
            cells = m["acc"].setdefault(split, {})
            for task, v in per_task.items():
                cells.setdefault(task, v)
                if task != "mean" and task not in tasks:
                    tasks.append(task)
        if source not in m["sources"]:
            m["sources"].append(source)

    for r in runs:
        before, after, _ = task_splits(r)
        _, _, n = task_accuracy(r)
        if n and not any(isinstance(v, dict) for d in after.values() for v in d.values()):
            ns.add(n)
        if before:
            key = _model_key(r.model)
            src = by_path.get(key)
            add(key, src.label if src else f"{r.model} (input of {r.label})", before,
                f"{r.label} (before)")
        if after:
            add(str(r.path.resolve()), r.label, after, f"{r.label} (after)")
    if not models:
        return None
    t = Table("Task accuracy by model and prompt set (measured by the training stages)",
              ["model", "prompts", *tasks, "mean", "measured in"],
              ["text", "text", *["acc"] * len(tasks), "acc", "text"])
    for m in models.values():
        for split in [x for x in SPLIT_LABELS if x in m["acc"]]:
            cells = m["acc"][split]
            mean = cells.get("mean", _mean(acc_value(v) for k, v in cells.items()))
            t.rows.append([m["label"], SPLIT_LABELS[split], *[cells.get(k) for k in tasks],
                           mean, ", ".join(m["sources"])])
    old_n = f" Runs without intervals: {' or '.join(map(str, sorted(ns)))} prompts per task." \
        if ns else ""
    t.note = ("Greedy decoding, the tasks' checkers. in-template: the training phrasings and "
              "number range, prompts never trained on; held-out template: phrasings training "
              "never used; out-of-range: larger numbers, longer lists. [95% bootstrap interval] "
              "n=prompts per task. 'before' is the input model measured at the start of a run."
              + old_n)
    return t


def evaluate_tables(runs: list[RunData]) -> list[Table]:
    """Each evaluate run's comparison.json: metrics x models (its headline metrics), then the
    pairwise results."""
    out = []
    for r in runs:
        c = r.comparison
        if not c and r.evals:  # no comparison.json: build the table from the eval.json files
            cols = sorted({k for e in r.evals.values() for k in (e.get("metrics") or {})})
            c = {"columns": cols, "table": {lb: e.get("metrics") or {}
                                            for lb, e in r.evals.items()}}
        if not c:
            continue
        metrics = list(c.get("headline") or c.get("columns") or [])
        table = c.get("table") or {}
        t = Table(f"lmlab evaluate ({r.label}): metrics by model", ["metric", *table],
                  ["text"] + ["num"] * len(table))
        ivs = c.get("intervals") or {}
        t.rows = [[k, *[_with_interval((table[m] or {}).get(k), (ivs.get(m) or {}).get(k))
                        for m in table]] for k in metrics]
        t.row_kinds = ["acc" if any((ivs.get(m) or {}).get(k) for m in table)
                       else _metric_kind(k) for k in metrics]
        t.note = ("Higher is better except perplexity, bits_per_byte and over_refusal_rate. "
                  + "; ".join(f"{lb}: {e.get('model', '')}" for lb, e in r.evals.items()))
        out.append(t)
        pairs = c.get("pairwise") or []
        if pairs:
            p = Table(f"Pairwise win rates ({r.label})",
                      ["A", "B", "set", "judge", "n", "wins", "ties", "losses", "win rate A",
                       "95% CI", "agrees with RM"],
                      ["text"] * 4 + ["int"] * 4 + ["pct", "text", "pct"])
            for w in pairs:
                ci = w.get("ci95") or [None, None]
                p.rows.append([w.get("a"), w.get("b"), w.get("set"), w.get("judge"), w.get("n"),
                               w.get("wins"), w.get("ties"), w.get("losses"), w.get("win_rate"),
                               f"{fmt(ci[0], 'pct')} – {fmt(ci[1], 'pct')}",
                               w.get("agreement_with_reward")])
            out.append(p)
        cont = c.get("contamination") or []
        if cont:
            k = Table(f"Contamination ({r.label}): eval items sharing a word "
                      f"{cont[0].get('n')}-gram with the model's training data",
                      ["model", "set", "items", "overlapping", "share", "flagged"],
                      ["text", "text", "int", "int", "pct", "text"])
            k.rows = [[x.get("model"), x.get("set"), x.get("items"), x.get("overlapping"),
                       x.get("share"), "YES" if x.get("flagged") else "no"] for x in cont]
            k.note = "Training data: " + "; ".join(dict.fromkeys(
                n for x in cont for n in x.get("train_data") or []))
            out.append(k)
    return out


def _with_interval(value, iv):
    if value is None or not iv:
        return value
    return {"accuracy": value, "ci95": iv.get("ci95"), "n": iv.get("n")}


def _metric_kind(key: str) -> str:
    name = key.rsplit("/", 1)[-1]
    if "accuracy" in name or name.endswith("_rate") or name.startswith("pass@"):
        return "pct"
    return "num"


# --- findings: what improved and what did not, said plainly ----------------------------------


def findings(runs: list[RunData]) -> list[str]:
    out = []
    for r in runs:
        s = r.summary
        if s is None:
            out.append(f"{r.label} ({r.stage}) has not finished: no summary.json.")
            continue
        before, after, n = task_accuracy(r)
        if before and after and r.stage == "distill":
            out.append(f"{r.label} (distill): the student's mean held-out task accuracy is "
                       f"{fmt(_mean(after.values()), 'pct')}, the teacher's "
                       f"{fmt(_mean(before.values()), 'pct')} ({', '.join(after)}).")
        elif before and after:
            b, a = _mean(before.values()), _mean(after.values())
            verdict = ("raised" if a > b else "did not raise")
            gain = task_splits(r)[2]
            g = (gain.get("test") or {}).get("mean")
            how = (f"{g['n']} prompts, gain {_pts(g['gain'])}, 95% CI {_ci_pts(g['ci95'])}"
                   if g else f"{n} prompts per task")
            out.append(f"{r.label} ({r.stage}) {verdict} mean in-template task accuracy over "
                       f"its input model: {fmt(b, 'pct')} → {fmt(a, 'pct')} "
                       f"({', '.join(after)}; {how}).")
            out += generalisation(r, gain)
        if r.stage == "reward":
            ev = s.get("eval_after") or {}
            if ev.get("eval/accuracy") is not None:
                out.append(f"{r.label} (reward model): held-out pairwise accuracy "
                           f"{fmt(ev['eval/accuracy'], 'pct')}{_binary_ci(ev)} on "
                           f"{fmt(ev.get('eval/pairs'), 'int')} pairs (chance is 50%).")
        if r.stage == "dpo":
            ev, kl = s.get("eval_after") or {}, (s.get("kl") or {}).get("kl/token")
            if ev.get("eval/rewards/accuracy") is not None:
                out.append(f"{r.label} ({s.get('loss', 'dpo')}): held-out implied-reward accuracy "
                           f"{fmt(ev['eval/rewards/accuracy'], 'pct')}"
                           f"{_binary_ci(ev, 'eval/rewards/accuracy')}"
                           f"{_pairs(ev)}, KL to the reference {fmt(kl)} per token.")
        if s.get("stopped_early"):  # grpo, ppo: kl_stop
            out.append(f"{r.label} ({r.stage}) stopped early: {s['stopped_early']}.")
        for msg in s.get("warnings") or []:  # grpo, ppo: lmlab.rl.monitor
            out.append(f"{r.label} ({r.stage}) warning: {msg}.")
        cont = (r.comparison or {}).get("contamination") or []
        if cont and not any(c.get("flagged") for c in cont):
            out.append(f"{r.label} (evaluate): no eval set shares a word {cont[0].get('n')}-gram "
                       f"with the training data of the runs it scored ({len(cont)} sets "
                       "checked).")
        for c in cont:
            if c.get("flagged"):
                out.append(f"CONTAMINATION ({r.label}): {c.get('overlapping')} of "
                           f"{c.get('items')} items of {c.get('set')} share a word "
                           f"{c.get('n')}-gram with {c.get('model')}'s training data; its "
                           f"score there measures memory, not skill.")
        for w in (r.comparison or {}).get("pairwise") or []:
            ci = w.get("ci95") or [None, None]
            out.append(f"{w.get('a')} vs {w.get('b')} on {w.get('set')} ({w.get('judge')}): "
                       f"win rate {fmt(w.get('win_rate'), 'pct')} "
                       f"[{fmt(ci[0], 'pct')}, {fmt(ci[1], 'pct')}] over {w.get('n')} prompts.")
    return out


def _pairs(ev: dict) -> str:
    n = ev.get("eval/pairs")
    return f" on {n} pairs" if isinstance(n, int) and n > 0 else ""


def _binary_ci(ev: dict, key: str = "eval/accuracy") -> str:
    """" [lo–hi]": the 95% bootstrap interval of an accuracy over ``eval/pairs`` items,
    from its count (the bootstrap of a 0/1 mean depends only on k and n)."""
    from lmlab.eval.intervals import accuracy

    n, acc = ev.get("eval/pairs"), ev.get(key)
    if not isinstance(n, int) or n <= 0 or acc is None:
        return ""
    k = round(acc * n)
    ci = accuracy([True] * k + [False] * (n - k))["ci95"]
    return f" [{100 * ci[0]:.1f}–{100 * ci[1]:.1f}]"


def _survives(g: dict | None) -> bool:
    return bool(g and g.get("ci95") and g["ci95"][0] > 0)


def generalisation(r: RunData, gain: dict) -> list[str]:
    """Does the in-template gain survive held-out phrasing (and out-of-range numbers)? Said
    in words, per split, and per task where it does not."""
    out = []
    g_in = (gain.get("test") or {}).get("mean")
    for split, what in (("heldout", "held-out phrasing"), ("range", "out-of-range numbers")):
        per_task = gain.get(split) or {}
        g = per_task.get("mean")
        if not g:
            continue
        out.append(f"{r.label} ({r.stage}) on {SPLIT_LABELS[split]} prompts: "
                   f"{fmt(g['before'], 'pct')} → {fmt(g['after'], 'pct')}, gain "
                   f"{_pts(g['gain'])} (95% CI {_ci_pts(g['ci95'])}, {g['n']} prompts).")
        lost = [t for t, x in per_task.items() if t != "mean" and _survives(
            (gain.get("test") or {}).get(t)) and not _survives(x)]
        if g_in and _survives(g_in) and not _survives(g):
            out.append(f"{r.label}'s in-template gain ({_pts(g_in['gain'])}) does NOT survive "
                       f"{what}: {_pts(g['gain'])}, 95% CI {_ci_pts(g['ci95'])} includes zero "
                       "- it learned the template more than the task.")
        elif lost:
            out.append(f"{r.label}'s in-template gain does NOT survive {what} on " + ", ".join(
                f"{t} ({_pts(per_task[t]['gain'])}, 95% CI {_ci_pts(per_task[t]['ci95'])})"
                for t in lost) + ".")
    return out


# --- samples side by side -------------------------------------------------------------------


def _prompt_text(p) -> str:
    if isinstance(p, list):
        users = [m.get("content", "") for m in p if isinstance(m, dict) and
                 m.get("role") == "user"]
        return users[-1] if users else str(p)
    return str(p)


def _cell(row: dict, limit: int = 240) -> str:
    text = str(row.get("completion", row.get("text", row.get("output", "")))).strip()
    if len(text) > limit:
        text = text[:limit] + "…"
    mark = {True: " ✓", False: " ✗"}.get(row.get("correct"), "")
    return (text or "(empty)") + mark


def samples_table(runs: list[RunData], k: int = 6) -> Table | None:
    """The same prompts across every run that wrote samples: the prompts most runs share."""
    sources: list[tuple[str, dict[str, dict]]] = []
    for r in runs:
        groups = [(r.label, r.samples)] if r.samples else []
        groups += [(f"{r.label}/{lb}", rows) for lb, rows in r.eval_samples.items() if rows]
        for label, rows in groups:
            by_prompt: dict[str, dict] = {}
            for row in rows:
                if "prompt" in row:
                    by_prompt.setdefault(_prompt_text(row["prompt"]), row)
            if by_prompt:
                sources.append((label, by_prompt))
    if not sources:
        return None
    order: list[str] = []
    for _, rows in sources:
        order += [p for p in rows if p not in order]
    count = {p: sum(p in rows for _, rows in sources) for p in order}
    chosen = sorted(order, key=lambda p: -count[p])[:k]
    chosen.sort(key=order.index)
    t = Table("Sample generations on the same prompts", ["prompt", "answer",
                                                         *[s[0] for s in sources]],
              ["text"] * (2 + len(sources)))
    for p in chosen:
        answer = next((rows[p].get("answer") for _, rows in sources if p in rows
                       and rows[p].get("answer") is not None), None)
        t.rows.append([p, answer, *[_cell(rows[p]) if p in rows else MISSING
                                    for _, rows in sources]])
    t.note = "✓ / ✗: the task's checker on that reply. Greedy unless the run sampled."
    return t


# --- speed ----------------------------------------------------------------------------------


def training_speed(runs: list[RunData]) -> Table | None:
    t = Table("Training speed", ["run", "stage", "steps", "s/step", "tokens/s",
                                 "peak memory (GB)", "train time"],
              ["text", "text", "int", "num", "num", "num", "sec"])
    for r in runs:
        rows = [m for m in r.metrics if "train/step_s" in m]
        if not rows:
            continue
        mem = [m["train/mem_gb"] for m in rows if m.get("train/mem_gb") is not None]
        t.rows.append([r.label, r.stage, len(rows), _mean(m["train/step_s"] for m in rows),
                       _mean(m.get("train/tokens_per_s") for m in rows),
                       max(mem) if mem else None, (r.summary or {}).get("train_seconds")])
    t.note = "Means over the logged steps (metrics.jsonl); train time from summary.json."
    return t if t.rows else None


def generation_speed(runs: list[RunData]) -> Table | None:
    t = Table("Generation speed", ["run", "model", "strategy", "prompts", "new tokens",
                                   "seconds", "tokens/s"],
              ["text", "text", "text", "int", "int", "num", "num"])
    for r in runs:
        s = r.summary or {}
        if r.stage == "generate" and s:
            t.rows.append([r.label, model_name(r.model, runs), s.get("strategy"), s.get("prompts"),
                           s.get("new_tokens"), s.get("seconds"), s.get("tokens_per_s")])
    return t if t.rows else None


def bench_run_table(run: RunData) -> Table | None:
    """``lmlab bench``'s rows (bench.json): one row per (strategy, batch size)."""
    rows = (run.bench or {}).get("rows") or []
    if not rows:
        return None
    cols = list(dict.fromkeys(k for row in rows for k in row))
    t = Table(f"Benchmark run: {run.label} (lmlab bench {run.bench.get('what', '')})", cols,
              ["text" if isinstance(rows[0].get(k), str) else "num" for k in cols])
    t.rows = [[row.get(k) for k in cols] for row in rows]
    env = run.bench.get("env") or {}
    t.note = f"model {run.model}" + "".join(f" · {k}: {v}" for k, v in env.items())
    return t


def bench_quality_table(run: RunData) -> Table | None:
    """``lmlab bench generate``'s quality pass (bench.json ``quality``): one row per strategy."""
    rows = (run.bench or {}).get("quality") or []
    if not rows:
        return None
    t = Table(f"What each strategy does to the text: {run.label}",
              ["strategy", "prompts", "accuracy", "distinct-2", "mean new tokens", "ended"],
              ["text", "int", "num", "num", "num", "num"])
    t.rows = [[r.get(k) for k in ("strategy", "prompts", "accuracy", "distinct_2",
                                  "mean_new_tokens", "ended")] for r in rows]
    t.note = ("one untimed pass per strategy, EOS respected; ended: the share that stopped "
              "before max_new_tokens")
    return t


def _flatten(d, prefix: str = ""):
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _flatten(v, f"{key}.")
        elif isinstance(v, (int, float, str, bool)) or v is None:
            yield key, v


def bench_table(bench: BenchFile, limit: int = 40) -> Table:
    """A benchmark JSON file as a grid: one row per group of numbers (``greedy8``,
    ``strategies.beam 4``), one column per measurement; top-level values go in the note."""
    flat = list(_flatten(bench.data))
    info = [(k, v) for k, v in flat if "." not in k]
    groups: dict[str, dict] = {}
    for key, v in flat:
        if "." in key:
            row, col = key.rsplit(".", 1)
            groups.setdefault(row, {})[col] = v[:60] + "…" if isinstance(v, str) and \
                len(v) > 60 else v
    cols = list(dict.fromkeys(c for g in groups.values() for c in g))
    t = Table(f"Benchmark: {bench.label}", ["", *cols],
              ["text", *["num"] * len(cols)])
    t.rows = [[row, *[g.get(c) for c in cols]] for row, g in list(groups.items())[:limit]]
    t.note = f"{bench.path}" + "".join(f" · {k}: {v}" for k, v in info)
    return t


# --- environment ----------------------------------------------------------------------------


def environment_table(env: dict, title: str) -> Table:
    t = Table(title, ["", "value"], ["text", "text"])
    t.rows = [[k, v] for k, v in env.items()]
    return t


def wall_table(runs: list[RunData]) -> Table:
    t = Table("Wall time per stage", ["run", "stage", "started", "wall time", "measured by"],
              ["text", "text", "text", "sec", "text"])
    for r in runs:
        how = {"pipeline": "lmlab pipeline (whole step)",
               "files": "config.yaml → summary.json times"}.get(r.wall_source, MISSING)
        t.rows.append([r.label, r.stage, r.started, r.wall_s, how])
    total = _mean(r.wall_s for r in runs)
    if total is not None:
        t.rows.append(["total", "", "", sum(r.wall_s for r in runs if r.wall_s), ""])
    return t
