"""The report's chain-of-thought and self-instruct section: answer-only vs CoT SFT runs side by
side (held-out task accuracy before -> after per eval split, trained tokens, time), and what
each ``lmlab self-instruct`` run generated, kept and rejected (by reason), with the accuracy of
an SFT run trained on its kept rows. Every number is copied from summary.json."""

from __future__ import annotations

from pathlib import Path

from lmlab.report.collect import RunData
from lmlab.report.tables import Table

SPLITS = ("test", "heldout", "range")


def _mean(summary: dict, key: str, split: str):
    return (((summary.get(key) or {}).get(split) or {}).get("mean") or {}).get("accuracy")


def _is_cot(run: RunData) -> bool:
    from lmlab.data.tasks.cot import split_source
    from lmlab.errors import UserError

    data = str(run.config.get("data", ""))
    try:
        return data.startswith("task:") and split_source(data)[1].get("cot", False)
    except UserError:  # a config the parser refuses is not a CoT run
        return False


def cot_table(runs: list[RunData]) -> Table | None:
    sft = [r for r in runs if r.stage == "sft" and r.summary
           and str(r.config.get("data", "")).startswith("task:")]
    if not any(_is_cot(r) for r in sft):
        return None
    cols = ["run", "replies", "data", "steps", "trained tokens", "train s"]
    kinds = ["text", "text", "text", "int", "int", "sec"]
    for split in SPLITS:
        cols += [f"{split} before", f"{split} after"]
        kinds += ["pct", "pct"]
    t = Table("Answer-only vs chain-of-thought SFT (held-out task accuracy, mean over tasks)",
              cols, kinds)
    for r in sft:
        s = r.summary
        row = [r.label, "worked solution" if _is_cot(r) else "answer only",
               str(r.config.get("data")).split("?")[0], s.get("steps"),
               (s.get("data") or {}).get("trained_tokens"), s.get("train_seconds")]
        for split in SPLITS:
            row += [_mean(s, "task_eval_before", split), _mean(s, "task_eval_after", split)]
        t.rows.append(row)
    t.note = ("CoT runs are asked the same held-out questions with a show-your-work instruction "
              "and scored on their final line by the strict checker; answer-only runs are asked "
              "for the answer alone. test = in-template, heldout = held-out phrasing, range = "
              "out of the training range.")
    return t


def self_instruct_table(runs: list[RunData]) -> Table | None:
    from lmlab.data.selfinstruct import REASONS

    made = [r for r in runs if r.stage == "self-instruct" and r.summary]
    if not made:
        return None
    t = Table("Self-instruct: generated, kept, rejected by reason",
              ["run", "model", "seeds", "generated", "kept", *REASONS, "SFT on it",
               "in-template before", "in-template after"],
              ["text", "text", "int", "int", "int", *["int"] * len(REASONS), "text", "pct",
               "pct"])
    for r in made:
        s = r.summary
        rejected = s.get("rejected") or {}
        user = _sft_on(r, runs)
        t.rows.append([r.label, r.model, s.get("seeds"), s.get("generated"), s.get("kept"),
                       *[rejected.get(k) for k in REASONS],
                       user.label if user else "", *(
                           [_mean(user.summary, "task_eval_before", "test"),
                            _mean(user.summary, "task_eval_after", "test")] if user
                           else [None, None])])
    t.note = ("not_novel: ROUGE-L with a pool instruction at or above the run's novelty "
              "threshold; checker: a built-in task answered wrong (strict checker).")
    return t


def _sft_on(made: RunData, runs: list[RunData]) -> RunData | None:
    kept = (made.path / "kept.jsonl").resolve()
    for r in runs:
        data = str(r.config.get("data", ""))
        if r.stage == "sft" and r.summary and data.endswith("kept.jsonl") \
                and Path(data).resolve() == kept:
            return r
    return None


def recipe_tables(runs: list[RunData]) -> list[Table]:
    return [t for t in (cot_table(runs), self_instruct_table(runs)) if t]
