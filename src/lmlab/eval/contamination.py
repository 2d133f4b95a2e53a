"""Contamination: does a model's training data overlap the eval sets it is scored on?

``training_texts(ref)`` follows a model reference through run folders (an ``lmlab dpo`` run of
an ``lmlab sft`` run of the base model: both runs' data) and reads each run's training rows the
way its stage did (``data``, ``mapping``, ``data_limit``; built-in tasks: the train split).
``set_items(name, result)`` turns a scored eval set into texts (prompt + answer or references;
perplexity sets: their texts' paragraphs). ``lmlab.eval.overlap.ngram_overlap`` counts the eval
items sharing a word 13-gram with the training texts; a set with any such item is flagged.

A base model's own pre-training data is unknown here: only lmlab runs' data is checked.
"""

from __future__ import annotations

from pathlib import Path

# The row kind each stage reads its training data as (lmlab.data.load_rows).
STAGE_KIND = {"sft": "chat", "qat": "chat", "distill": "chat", "reward": "preference",
              "dpo": "preference", "grpo": "task", "ppo": "task", "preferences": "task"}
MAX_CHAIN = 8


def run_folder(ref: str) -> Path | None:
    """The run folder a model reference points at (the folder or its ``final/``), else None."""
    p = Path(ref)
    if p.name == "final":
        p = p.parent
    return p if (p / "config.yaml").is_file() else None


def _config(folder: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def row_text(row) -> str:
    """Every string in a row (prompt, messages, chosen, rejected, answer, text), joined."""
    if isinstance(row, str):
        return row
    if isinstance(row, dict):
        return "\n".join(row_text(v) for k, v in row.items() if k not in ("task", "id", "label"))
    if isinstance(row, (list, tuple)):
        return "\n".join(row_text(v) for v in row)
    return ""


def training_texts(ref: str) -> tuple[list[str], list[str]]:
    """(training texts of every lmlab run behind ``ref``, one note per run: "sft-x: task:add
    (1000 rows)" or why its data could not be read). Both empty for a model with no run."""
    from lmlab.data import load_rows

    texts: list[str] = []
    notes: list[str] = []
    folder, seen = run_folder(ref), set()
    while folder is not None and len(seen) < MAX_CHAIN and folder.resolve() not in seen:
        seen.add(folder.resolve())
        cfg = _config(folder)
        stage, data = str(cfg.get("stage", "?")), cfg.get("data")
        if isinstance(data, str) and data and stage in STAGE_KIND:
            try:
                rows = load_rows(data, STAGE_KIND[stage], mapping=cfg.get("mapping") or None,
                                 split="train", limit=cfg.get("data_limit"), on_error="skip")
                texts += [row_text(r) for r in rows]
                notes.append(f"{folder.name} ({stage}): {data} ({len(rows)} rows)")
            except Exception as e:  # noqa: BLE001 - a note, not a failure of the evaluation
                notes.append(f"{folder.name} ({stage}): {data} unreadable ({e})")
        folder = run_folder(str(cfg.get("model", ""))) if cfg.get("model") else None
    return texts, notes


def set_items(name: str, result: dict, settings) -> dict[str, list[str]]:
    """Texts of the items an eval set scored, keyed by a label (the tasks set: one per split)."""
    samples = result.get("samples") or []
    if samples:
        out: dict[str, list[str]] = {}
        for x in samples:
            label = f"{name}/{x['split']}" if name == "tasks" and "split" in x else name
            parts = [x.get("prompt", ""), str(x.get("answer", "") or "")]
            parts += list(x.get("references") or [])
            out.setdefault(label, []).append("\n".join(p for p in parts if p))
        return out
    if name == "ppl:tasks":
        from lmlab.data.tasks import examples
        from lmlab.eval.sets import task_names

        return {name: [r["prompt"] + "\n" + r["answer"] for t in task_names(settings)
                       for r in examples(t, "test", settings.limit or 50, settings.seed)]}
    if name == "ppl:shakespeare":
        from lmlab.eval.sources import shakespeare_heldout

        return {name: _paragraphs("\n\n".join(shakespeare_heldout()))}
    if name.startswith("ppl:"):
        from lmlab.textfile import read_text

        return {name: _paragraphs(read_text(name[4:]))}
    return {}


def _paragraphs(text: str, limit: int = 5000) -> list[str]:
    return [p for p in (q.strip() for q in text.split("\n\n")) if p][:limit]


def check(train: list[str], items: dict[str, list[str]], n: int) -> list[dict]:
    """One row per item group: ``ngram_overlap`` plus ``flagged`` (any overlapping item)."""
    from lmlab.eval.overlap import ngram_overlap

    rows = []
    for label, texts in items.items():
        got = ngram_overlap(train, texts, n)
        rows.append({"set": label, **got, "flagged": got["overlapping"] > 0})
    return rows
