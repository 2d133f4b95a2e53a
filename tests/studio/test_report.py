"""The report's arena section: wins, losses and ties per model from the votes file beside the
run folders (hand-counted rows)."""

import json

from lmlab.report.arena import arena_tables
from lmlab.report.collect import RunData


def test_arena_table_counts_votes_per_model(tmp_path):
    def meta(c, r):
        return {"prompt": "p", "chosen": "x", "rejected": "y",
                "meta": {"chosen_model": c, "rejected_model": r}}

    rows = [meta("sft", "base"), meta("sft", "base"), meta("base", "sft"), meta("dpo", "sft")]
    (tmp_path / "arena-preferences.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows) + "{broken\n")
    (tmp_path / "arena-preferences.ties.jsonl").write_text(json.dumps(
        {"prompt": "p", "replies": ["a", "b"], "meta": {"models": ["base", "dpo"]}}) + "\n")
    runs = [RunData(tmp_path / "sft-x", "sft", {}), RunData(tmp_path / "dpo-x", "dpo", {})]
    [t] = arena_tables(runs)
    got = {r[0]: r[1:] for r in t.rows}
    assert got == {"sft": [4, 2, 2, 0, 0.5], "base": [4, 1, 2, 1, 1 / 3],
                   "dpo": [2, 1, 0, 1, 1.0]}
    assert t.rows[0][0] == "sft"  # most wins first


def test_no_votes_no_section(tmp_path):
    assert arena_tables([RunData(tmp_path / "sft-x", "sft", {})]) == []
