"""The report's pretraining section: one row per `lmlab pretrain` run, and the before/after of
continued pretraining. Every number comes from the runs' summary.json."""

from __future__ import annotations

from lmlab.report.collect import RunData
from lmlab.report.tables import Table


def pretrain_tables(runs: list[RunData]) -> list[Table]:
    done = [r for r in runs if r.stage == "pretrain" and r.summary]
    if not done:
        return []
    t = Table("Pretraining runs (objective, position scheme, val on held-out text)",
              ["run", "objective", "position", "preset", "params", "steps", "tokens/s",
               "val loss", "bits/byte", "train time"],
              ["text", "text", "text", "text", "int", "int", "num", "num", "num", "sec"])
    for r in done:
        s, val = r.summary, r.summary.get("val") or {}
        t.rows.append([r.label, s.get("objective"), s.get("position"),
                       s.get("preset") if s.get("model") == "scratch" else s.get("model"),
                       s.get("params"), s.get("steps"), s.get("tokens_per_s"), val.get("loss"),
                       val.get("bits_per_byte"), s.get("train_seconds")])
    t.note = ("Bits per byte compare tokenizers (same text, same byte count); val loss of mlm, "
              "span and electra is their own objective's, not a next-token loss.")
    tables = [t]
    cont = [r for r in done if r.summary.get("before")]
    if cont:
        c = Table("Continued pretraining: bits per byte before / after",
                  ["run", "model", "domain before", "domain after", "general before",
                   "general after"], ["text", "text", "num", "num", "num", "num"])
        for r in cont:
            b, a = r.summary["before"], r.summary["after"]
            c.rows.append([r.label, r.summary.get("model"),
                           b.get("val", {}).get("bits_per_byte"),
                           a.get("val", {}).get("bits_per_byte"),
                           b.get("general", {}).get("bits_per_byte"),
                           a.get("general", {}).get("bits_per_byte")])
        c.note = "General text: general_data=; what the domain training made the model forget."
        tables.append(c)
    from lmlab.report.paradigms import paradigm_items

    return tables + paradigm_items(done)
