"""Report section for ``engine=llama.cpp``: `lmlab generate` runs by engine, side by side (the
llama.cpp ones with their GGUF file), so a run on llama.cpp reads beside ours on the same data.
The benchmark itself (benchmarks/bench_llamacpp.py's JSON) shows in the Speed section."""

from __future__ import annotations

from pathlib import Path

from lmlab.report.collect import RunData
from lmlab.report.tables import Table


def engine_table(runs: list[RunData]) -> Table | None:
    """One row per finished generate run, when at least one of them ran on llama.cpp."""
    gen = [r for r in runs if r.stage == "generate" and r.summary]
    if not any((r.summary or {}).get("engine") == "llama.cpp" for r in gen):
        return None
    t = Table("Generation by engine", ["run", "engine", "weights", "data", "strategy", "prompts",
                                       "tok/s", "accuracy"],
              ["text", "text", "text", "text", "text", "int", "num", "pct"])
    for r in gen:
        s = r.summary
        llama = s.get("engine") == "llama.cpp"
        weights = Path(s.get("gguf_file", "")).name if llama else \
            str(r.config.get("dtype", "auto"))
        t.rows.append([r.label, s.get("engine", "lmlab"), weights, str(r.config.get("data", "")),
                       s.get("strategy"), s.get("prompts"), s.get("tokens_per_s"),
                       s.get("accuracy")])
    t.note = ("llama.cpp runs decode a GGUF file (the model exported once to gguf=<type>, or "
              "a .gguf file) with lmlab's sampler; tok/s from each run's summary.json, on the "
              "machine and load it ran with (docs/llamacpp.md).")
    return t


def llamacpp_items(runs: list[RunData]) -> list:
    return [t for t in [engine_table(runs)] if t]
