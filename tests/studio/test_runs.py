"""The runs table: rows from run folders (pipeline steps too), status rules, damaged folders
listed with their problem, metrics read incrementally and from an offset."""

from __future__ import annotations

import json
import os

import pytest

from lmlab.errors import UserError
from lmlab.studio.runs import RunIndex, read_rows, resolve_name

from .conftest import make_run


def rows_by_name(root, **kw):
    return {r["name"]: r for r in RunIndex(root, **kw).scan()}


def test_table_lists_runs_and_pipeline_steps_with_status(tmp_path):
    make_run(tmp_path, "done", summary=True, rows=4)
    make_run(tmp_path, "stopped", checkpoint=2)
    make_run(tmp_path, "crashed")
    make_run(tmp_path, "live", old=False)
    pipe = make_run(tmp_path, "pipe", stage="pipeline", rows=0, summary=True)
    make_run(pipe, "sft", summary=True)
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / ".studio").mkdir()
    rows = rows_by_name(tmp_path)
    assert set(rows) == {"done", "stopped", "crashed", "live", "pipe", "pipe/sft"}
    assert {n: r["status"] for n, r in rows.items()} == {
        "done": "finished", "stopped": "interrupted", "crashed": "failed", "live": "running",
        "pipe": "finished", "pipe/sft": "finished"}
    done = rows["done"]
    assert (done["stage"], done["model"], done["steps"], done["max_steps"]) == \
        ("sft", "tiny:llama", 4, 10)
    assert done["metric"] == {"key": "train/loss", "value": 0.75}
    assert done["age_s"] >= 3500 and done["problem"] == ""
    assert rows["stopped"]["checkpoint"] == 2


def test_a_job_state_wins_over_the_folder(tmp_path):
    path = make_run(tmp_path, "a", checkpoint=1)
    index = RunIndex(tmp_path)
    assert index.scan({path: {"status": "queued"}})[0]["status"] == "queued"
    assert index.scan({path: {"status": "stopped"}})[0]["status"] == "interrupted"
    assert index.scan({path: {"status": "failed"}})[0]["status"] == "failed"


def test_corrupt_metrics_line_and_missing_config_are_listed_with_the_problem(tmp_path):
    bad = make_run(tmp_path, "bad", rows=2)
    with open(bad / "metrics.jsonl", "a") as f:
        f.write("{not json\n" + json.dumps({"step": 4, "train/loss": 0.5}) + "\n")
    make_run(tmp_path, "noconfig", config=False)
    broken = make_run(tmp_path, "broken")
    (broken / "config.yaml").write_bytes(b"stage: [unclosed\n\xff")
    (broken / "summary.json").write_text("{")
    rows = rows_by_name(tmp_path)
    assert rows["bad"]["problem"].startswith("metrics.jsonl:3: not a JSON row")
    assert rows["bad"]["steps"] == 4  # the rows around it still count
    assert rows["noconfig"]["problem"] == "config.yaml is missing"
    assert rows["noconfig"]["stage"] == "?" and rows["noconfig"]["steps"] == 3
    assert "config.yaml is damaged" in rows["broken"]["problem"]
    assert "summary.json is damaged" in rows["broken"]["problem"]


def test_metrics_are_read_incrementally_and_a_rewind_starts_over(tmp_path):
    path = make_run(tmp_path, "a", rows=2)
    index = RunIndex(tmp_path)
    assert index.scan()[0]["steps"] == 2
    with open(path / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 3, "train/loss": 0.1}) + "\n" + '{"step": 4, "tr')
    assert index.scan()[0]["steps"] == 3  # the half-written line waits
    tail = index._tails[path.resolve()]
    assert tail.rows == 3 and tail.offset == len((path / "metrics.jsonl").read_bytes()) - len('{"step": 4, "tr')
    # a resumed run rewinds metrics.jsonl (a new file, shorter): read from the start again
    tmp = path / ".m"
    tmp.write_text(json.dumps({"step": 1, "train/loss": 9.0}) + "\n")
    os.replace(tmp, path / "metrics.jsonl")
    row = index.scan()[0]
    assert row["steps"] == 1 and row["metric"]["value"] == 9.0


def test_read_rows_from_an_offset(tmp_path):
    f = tmp_path / "metrics.jsonl"
    f.write_text('{"step": 1}\n{"step": 2}\nnope\n{"step": 3, "x": NaN}\n{"step"')
    first = read_rows(f, 0)
    assert [r["step"] for r in first["rows"]] == [1, 2, 3]
    assert first["rows"][2]["x"] is None  # NaN has no JSON spelling
    assert first["problems"] == ["metrics.jsonl: the line at byte 24 is not a JSON row: 'nope'"]
    assert first["offset"] == len(f.read_bytes()) - len('{"step"')
    assert read_rows(f, first["offset"])["rows"] == []
    with open(f, "a") as fh:
        fh.write(": 4}\n")
    later = read_rows(f, first["offset"])
    assert later["rows"] == [{"step": 4}] and not later["reset"]
    assert read_rows(f, 10_000)["reset"]  # past the end: the file was rewound
    assert read_rows(tmp_path / "missing.jsonl", 0)["rows"] == []


@pytest.mark.parametrize("name", ["..", "../x", "a/../../x", "/etc", "a/b/c", "", ".hidden",
                                  "a\\..\\b", "a/..", "%2e%2e"])
def test_names_cannot_leave_the_root(tmp_path, name):
    (tmp_path / "a").mkdir()
    with pytest.raises(UserError):
        resolve_name(tmp_path, name)


def test_a_link_that_leads_outside_is_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret").mkdir()
    (root / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(UserError, match="leads outside"):
        resolve_name(root, "link")
    assert resolve_name(root, "pipe/sft") == (root / "pipe" / "sft").resolve()


def test_a_second_scan_reads_no_config_again(tmp_path, monkeypatch):
    from lmlab.studio import runs

    for i in range(5):
        make_run(tmp_path, f"r{i}")
    pipe = make_run(tmp_path, "pipe", stage="pipeline", rows=0)
    make_run(pipe, "sft")
    index = RunIndex(tmp_path)
    calls = []
    real = runs._read_yaml
    monkeypatch.setattr(runs, "_read_yaml", lambda p: calls.append(p) or real(p))
    assert len(index.scan()) == 7 and len(calls) == 7
    assert len(index.scan()) == 7 and len(calls) == 7  # cached under the files' mtimes
    (tmp_path / "r0" / "config.yaml").write_text("stage: dpo\nmodel: x\n")
    assert {r["name"]: r["stage"] for r in index.scan()}["r0"] == "dpo"
    assert len(calls) == 8
