"""The report's "Neural networks by hand" section: what `lmlab scratch` runs measured (their
summary.json; nothing is recomputed). The curves come with every run's metrics.jsonl."""

from __future__ import annotations

from lmlab.report.collect import RunData
from lmlab.report.tables import Table, fmt


def _results(run: RunData) -> Table:
    s = run.summary or {}
    t = Table(f"From-scratch labs: {run.label}", ["lab", "what", "result"],
              ["text", "text", "text"])
    p = s.get("perceptron")
    if p:
        for gate in ("and", "or", "xor"):
            g = p[gate]
            t.rows.append(["perceptron", gate.upper(),
                           f"accuracy {fmt(g['accuracy'], 'pct')} after {g['epochs']} epochs"
                           + ("" if g["converged"] else ", never converged")])
        sep = p["separable"]
        t.rows.append(["perceptron", f"{sep['points']} separable points",
                       f"{sep['updates']} updates (bound {fmt(sep['novikoff_bound'])})"])
    x = s.get("xor")
    if x:
        got = (f"accuracy {fmt(x['accuracy'], 'pct')}, loss {fmt(x['loss'])}, all right from "
               f"step {x['solved_at_step']}")
        t.rows.append(["xor", f"2-{x['hidden']}-1 network, hand-written backprop", got])
        if x.get("seeds"):
            t.rows.append(["xor", f"random starts solved (of {x['seeds']}), by hidden units",
                           ", ".join(f"{h}: {n}" for h, n in x["solved_of_seeds"].items())])
    m = s.get("micrograd")
    if m:
        what = f"Value MLP ({m['parameters']} parameters), {m['points']} moons"
        got = (f"train {fmt(m['train_accuracy'], 'pct')}, fresh points "
               f"{fmt(m['test_accuracy'], 'pct')}, {fmt(m['seconds'], 'sec')}")
        t.rows.append(["micrograd", what, got])
    return t


def _layers(run: RunData) -> Table:
    t = Table(f"NumPy layers against torch (float64): {run.label}",
              ["layer", "max |ours - torch| output", "max |ours - torch| gradients",
               "gradients vs finite differences (relative)"], ["text", "num", "num", "num"])
    for name, r in run.summary["layers"].items():
        t.rows.append([name, r["out_vs_torch"], r["grad_vs_torch"], r["grad_vs_numeric"]])
    t.note = ("float64 roundoff is ~1e-16 per operation: differences near 1e-15 mean equal; "
              "finite differences (central, eps 1e-6) are good to ~1e-9.")
    return t


def scratch_tables(runs: list[RunData]) -> list[Table]:
    tables = []
    for r in runs:
        if r.stage != "scratch" or not r.summary:
            continue
        res = _results(r)
        if res.rows:
            tables.append(res)
        if r.summary.get("layers"):
            tables.append(_layers(r))
    return tables
