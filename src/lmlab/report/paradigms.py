"""The report's paradigms and data-selection tables: pretraining runs that
``benchmarks/pretrain_paradigms.py`` probed (``probe.json`` beside summary.json) and runs that
``benchmarks/bench_text_coresets.py`` trained on a selection (``coreset.json``), with the
val-loss curves of the probed runs. Nothing is recomputed: every number is in those files."""

from __future__ import annotations

import json
from pathlib import Path

from lmlab.report.collect import RunData
from lmlab.report.render import Figure
from lmlab.report.tables import Table

TASKS = ("spelling", "plain", "raw")  # the probe tasks of benchmarks/pretrain_paradigms.py


def _read(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def paradigm_table(runs: list[tuple[RunData, dict]]) -> Table:
    t = Table("Pretraining paradigms and position schemes: one corpus, one budget, one probe",
              ["run", "objective", "position", "params", "steps", "tokens/step", "val loss",
               "bits/byte", *[f"{who} ({task})" for task in TASKS
                              for who in ("probe", "untrained")],
               "real words in samples", "untrained"],
              ["text", "text", "text", "int", "int", "int", "num", "num",
               *["pct"] * (2 * len(TASKS)), "pct", "pct"])
    for r, p in runs:
        s, val = r.summary, r.summary.get("val") or {}
        acc = [_mean(p.get(key, {}).get(task, {}).get("accuracy", []))
               for task in TASKS for key in ("probe", "untrained_probe")]
        t.rows.append([r.label, s.get("objective"), s.get("position"), s.get("params"),
                       s.get("steps"), p.get("input_tokens_per_step"), val.get("loss"),
                       val.get("bits_per_byte"), *acc, p.get("known_word_rate"),
                       p.get("untrained_known_word_rate")])
    t.note = ("Probe: logistic regression on mean-pooled hidden states, real vs corrupted "
              "held-out lines (chance 50%), mean over probe seeds. spelling: letters shuffled "
              "inside words; plain: words shuffled, lowercase without punctuation; raw: words "
              "shuffled in the text as written. untrained = the same architecture at step 0, "
              "the baseline that matters. Val loss of mlm, span and electra is their own "
              "objective's.")
    return t


def curves_png(runs: list[RunData]) -> bytes:
    from lmlab.report.vision import _plot

    def draw(ax):
        for i, r in enumerate(runs):
            pts = [(m["step"], m["eval/loss"]) for m in r.metrics if "eval/loss" in m]
            end = (r.summary.get("val") or {}).get("loss")
            if end is not None and r.summary.get("steps") and (
                    not pts or pts[-1][0] < r.summary["steps"]):
                pts.append((r.summary["steps"], end))  # the final eval is in summary.json
            if pts:
                ax.plot(*zip(*pts), marker="o", markersize=3, color=f"C{i % 10}",
                        label=f"{r.summary.get('objective')} {r.summary.get('position')}")
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("val loss (own objective)", fontsize=8)
        ax.legend(fontsize=6)
    return _plot(draw)


def coreset_table(runs: list[tuple[RunData, dict]]) -> Table:
    groups: dict[tuple, list] = {}
    for r, c in runs:
        groups.setdefault((c.get("method"), c.get("fraction"), r.summary.get("steps")),
                          []).append((r, c))
    t = Table("Text coresets: pretraining on a selection of the rows, equal steps",
              ["method", "fraction", "steps", "runs", "rows kept", "cover radius", "val loss",
               "bits/byte", "min", "max"],
              ["text", "pct", "int", "int", "int", "num", "num", "num", "num", "num"])
    for (method, frac, steps), rs in sorted(groups.items(), key=lambda kv: (
            -(kv[0][1] or 0), str(kv[0][0]))):
        bpb = [r.summary.get("val", {}).get("bits_per_byte") for r, _ in rs]
        bpb = [b for b in bpb if b is not None]
        t.rows.append([method, frac, steps, len(rs), rs[0][1].get("kept"),
                       _mean([c.get("cover", {}).get("radius", 0) for _, c in rs]),
                       _mean([r.summary.get("val", {}).get("loss") for r, _ in rs]),
                       _mean(bpb), min(bpb, default=None), max(bpb, default=None)])
    t.note = ("Rows chosen by `lmlab select` on MiniLM embeddings (k-center greedy, facility "
              "location, random over seeds); the same model, steps and held-out text for every "
              "row. Cover radius: the largest distance from a row to its nearest kept row.")
    return t


def paradigm_items(runs: list[RunData]) -> list:
    done = [r for r in runs if r.stage == "pretrain" and r.summary]
    probed = [(r, p) for r in done if isinstance(p := _read(r.path / "probe.json"), dict)]
    chosen = [(r, c) for r in done if isinstance(c := _read(r.path / "coreset.json"), dict)]
    items: list = []
    if probed:
        items.append(paradigm_table(probed))
        # electra's loss (generator + 50 x discriminator) is on another scale: left out
        drawn = [r for r, _ in probed if r.summary.get("objective") != "electra"]
        if drawn:
            items.append(Figure("pretrain-paradigm-curves", curves_png(drawn),
                                "val loss of the probed pretraining runs (each its own "
                                "objective; electra left out: another scale)"))
    if chosen:
        items.append(coreset_table(chosen))
    return items
