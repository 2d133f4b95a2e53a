"""Run folders -> ``report.html`` (self-contained) and ``report.md``.

``build_report(paths, out_dir)`` reads what the stages wrote (``config.yaml``, ``summary.json``,
``metrics.jsonl``, ``samples.jsonl``, evaluate's ``eval.json`` / ``comparison.json``, benchmark
JSON files, ``pipeline.json``) and lays it out: findings, model comparison, curves, samples side
by side, speed, environment. Nothing is recomputed; every number comes from those files.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

__all__ = ["build_report", "headline_lines"]

# Each area's own section, after the runs table: (title, module in lmlab.report, function of the
# runs returning tables / figures, or nothing when no run of that area is there).
AREA_SECTIONS = [
    ("Tokenizers", "tokenizer", "tables"),
    ("Pretraining", "pretrain", "pretrain_tables"),
    ("Fine-tuning methods", "methods", "methods_items"),
    ("Neural networks by hand", "scratch", "scratch_tables"),
    ("Embeddings, retrieval and RAG", "embed", "embed_tables"),
    ("Vision", "vision", "vision_items"),
    ("CLIP", "clip", "clip_items"),
    ("Agents", "agents", "agent_items"),
    ("Arena", "arena", "arena_tables"),
    ("Precision and hardware", "hardware", "hardware_tables"),
    ("Training recipes", "recipes", "recipe_items"),
    ("llama.cpp engine", "llamacpp", "llamacpp_items"),
    ("Chain of thought and self-instruct", "recipes_cot", "recipe_tables"),
]


def _sections(runs, benches, pipelines, samples: int):
    from lmlab.report import tables as T
    from lmlab.report.collect import environment
    from lmlab.report.plots import run_figure
    from lmlab.report.render import Figure, Section

    found = T.findings(runs)
    compare = [t for t in [T.task_comparison(runs), *T.evaluate_tables(runs)] if t]
    sections = [Section("Findings", [found or ["No run measured a before/after number."]]),
                Section("Model comparison", compare or [
                    "No run measured models on held-out tasks or eval sets yet."]),
                Section("Runs", [T.runs_table(runs)])]
    for title, module, name in AREA_SECTIONS:
        if items := getattr(importlib.import_module(f"lmlab.report.{module}"), name)(runs):
            sections.append(Section(title, items))
    figures = []
    for i, r in enumerate(runs):
        png = run_figure(r)
        if png:
            figures.append(Figure(f"{i:02d}-{r.label.replace('/', '_')}", png,
                                  f"{r.label}: {r.stage}, metrics.jsonl"))
    sections.append(Section("Training curves", figures or ["No run logged metrics.jsonl."]))
    samples = T.samples_table(runs, samples) if samples else None
    sections.append(Section("Samples", [samples] if samples else [
        "No run wrote samples.jsonl."]))
    speed = [t for t in (T.training_speed(runs), T.generation_speed(runs)) if t]
    speed += [t for r in runs for t in (T.bench_run_table(r), T.bench_quality_table(r)) if t]
    speed += [T.bench_table(b) for b in benches]
    from lmlab.report.scale import scale_table

    speed += [t for t in [scale_table(runs)] if t]
    sections.append(Section("Speed", speed or ["No speed numbers in these runs."]))
    env = [T.wall_table(runs)]
    for p in pipelines:
        if p.get("environment"):
            env.append(T.environment_table(p["environment"],
                                           f"Machine that ran the pipeline {p.get('name', '')}"))
    env.append(T.environment_table(environment(), "Machine that built this report"))
    sections.append(Section("Environment", env))
    return sections, found, compare


def build_report(paths, out_dir, *, title: str = "lmlab report", pipeline=None,
                 samples: int = 6) -> dict:
    """Write ``out_dir/report.html``, ``report.md`` and ``plots/*.png``; return what it holds.

    ``paths``: run folders, folders of runs (searched a few levels down), benchmark JSON
    files. ``pipeline``: a ``pipeline.json`` whose measured wall times replace file times."""
    from lmlab.errors import UserError
    from lmlab.report.collect import discover
    from lmlab.report.render import Figure, to_html, to_markdown

    out = Path(out_dir)
    extra = [pipeline] if pipeline and Path(pipeline).exists() else []
    runs, benches, pipes = discover([*paths, *extra], exclude=out)
    if not runs and not benches:
        raise UserError(f"no run folders (config.yaml) or benchmark files found under "
                        f"{', '.join(map(str, paths))}")
    sections, found, compare = _sections(runs, benches, pipes, samples)
    meta = (f"Built {time.strftime('%Y-%m-%d %H:%M')} from {len(runs)} run folders"
            f"{f' and {len(benches)} benchmark files' if benches else ''}: "
            + ", ".join(r.label for r in runs))
    out.mkdir(parents=True, exist_ok=True)
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    for s in sections:
        for item in s.items:
            if isinstance(item, Figure):
                (plots / f"{item.name}.png").write_bytes(item.png)
    (out / "report.html").write_text(to_html(title, meta, sections))
    (out / "report.md").write_text(to_markdown(title, meta, sections, "plots"))
    return {"html": str(out / "report.html"), "md": str(out / "report.md"),
            "runs": [str(r.path) for r in runs], "benches": [str(b.path) for b in benches],
            "findings": found, "comparison": [_table_dict(t) for t in compare]}


def _table_dict(t) -> dict:
    kinds = [[t.kind(r, i) for i in range(len(t.columns))] for r in range(len(t.rows))]
    return {"title": t.title, "columns": t.columns, "kinds": kinds, "rows": t.rows}


def headline_lines(result: dict) -> list[str]:
    """What a pipeline prints at the end: the findings, then the comparison tables' rows."""
    from lmlab.report.tables import fmt

    lines = list(result.get("findings", []))
    for t in result.get("comparison", []):
        if t["title"].startswith(("Pairwise", "Contamination")):  # already among the findings
            continue
        lines.append(t["title"] + ":")
        for row, kinds in zip(t["rows"], t["kinds"]):
            cells = [f"{c} {fmt(v, k)}" for c, v, k in zip(t["columns"], row, kinds)
                     if k != "text" and (isinstance(v, dict) and k == "acc" or isinstance(
                         v, (int, float)) and not isinstance(v, bool))]
            lead = next((i for i, k in enumerate(kinds) if k != "text"), 1) or 1
            lines.append(f"  {', '.join(map(str, row[:lead]))}: " + ", ".join(cells))
    return lines
