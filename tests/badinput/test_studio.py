"""Bad-input corpus, `lmlab studio`: its own keys; damaged run folders in the table (listed with
the problem, never a crash); form values refused with the CLI's messages; run names and launch
requests that try to leave the root or smuggle a command; a second launch queued, not run
beside the first."""

from __future__ import annotations

import pytest

from lmlab.studio.runs import RunIndex

from ..studio.conftest import client, fake_queue, make_run, started, wait_for
from .conftest import changes, snapshot


@pytest.mark.parametrize("argv, parts", [
    (["host=0.0.0.0"], ["token", "0.0.0.0"]),
    (["host=192.168.1.5", "token="], ["token", "192.168.1.5"]),
    (["host=studio.example.com"], ["token"]),
    (["port=70000"], ["port", "70000", "<= 65535"]),
    (["portt=1"], ["unknown key 'portt'", "did you mean 'port'"]),
    (["log_level=loud"], ["log_level", "loud"]),
])
def test_studio_keys(fail, argv, parts):
    assert fail("studio", *argv).says(*parts)


@pytest.mark.parametrize("damage, problem", [
    (lambda p: (p / "metrics.jsonl").write_bytes(b'{"step": 1}\n\x00\xff garbage\n'),
     "metrics.jsonl:2: not a JSON row"),
    (lambda p: (p / "config.yaml").unlink(), "config.yaml is missing"),
    (lambda p: (p / "config.yaml").write_text("- a\n- list\n"), "config.yaml is not a mapping"),
    (lambda p: (p / "config.yaml").write_text("stage: [sft\n"), "config.yaml is damaged"),
    (lambda p: (p / "summary.json").write_text("[1, 2"), "summary.json is damaged"),
    (lambda p: (p / "summary.json").write_text("[1, 2]"), "summary.json is not an object"),
])
def test_damaged_run_folders_are_listed_with_the_problem(tmp_path, damage, problem):
    path = make_run(tmp_path, "hurt")
    make_run(tmp_path, "fine")
    damage(path)
    before = snapshot(tmp_path)
    rows = {r["name"]: r for r in RunIndex(tmp_path).scan()}
    assert problem in rows["hurt"]["problem"] and rows["fine"]["problem"] == ""
    c = client(tmp_path)
    assert problem in {r["name"]: r for r in c.get("/api/runs").json()["rows"]}["hurt"]["problem"]
    assert c.get("/run/hurt").status_code == 200
    assert c.get("/api/runs/hurt/details").status_code == 200
    assert c.get("/api/runs/hurt/metrics").status_code == 200
    assert changes(tmp_path, before) == []  # the studio only reads run folders


def test_a_metrics_file_that_is_a_folder_is_listed(tmp_path):
    path = make_run(tmp_path, "odd", rows=0)
    (path / "metrics.jsonl").unlink()
    (path / "metrics.jsonl").mkdir()
    rows = RunIndex(tmp_path).scan()
    assert rows[0]["name"] == "odd" and "cannot read" in rows[0]["problem"]


@pytest.mark.parametrize("values, key, message", [
    ({"max_steps": "ten"}, "max_steps", "max_steps: expected an integer, got 'ten' (int)"),
    ({"lr": "0"}, "lr", "lr: 0.0 is out of range (must be > 0.0)"),
    ({"method": "lorra"}, "method", "method: 'lorra' is not one of"),
    ({"output_dir": "../../etc"}, "output_dir", "is not a run folder name"),
    ({"output_dir": "a; rm -rf ~"}, "output_dir", "is not a run folder name"),
])
def test_form_values_are_refused_beside_the_field(tmp_path, values, key, message):
    r = client(tmp_path).post("/api/launch/sft", json={"values": values})
    assert r.status_code == 422
    assert any(message in m for m in r.json()["errors"][key]), r.json()


@pytest.mark.parametrize("body", [[1, 2], {"values": "max_steps=3"}, "x"])
def test_launch_bodies_that_are_not_key_value(tmp_path, body):
    r = client(tmp_path).post("/api/launch/sft", json=body)
    assert r.status_code == 400 and "error" in r.json()


def test_a_form_cannot_overwrite_a_run_without_overwrite(tmp_path):
    make_run(tmp_path, "kept", summary=True)
    before = snapshot(tmp_path)
    r = client(tmp_path).post("/api/launch/sft", json={"values": {"output_dir": "kept"}})
    assert r.status_code == 422
    assert "already holds a sft run" in r.json()["errors"]["output_dir"][0]
    assert changes(tmp_path, before) == []


def test_a_second_launch_is_queued_not_run_beside_the_first(tmp_path):
    from fastapi.testclient import TestClient

    from lmlab.studio.app import create_app
    from lmlab.studio.context import StudioContext

    with fake_queue(tmp_path) as (q, folder):
        c = TestClient(create_app(StudioContext(root=q.root, queue=q)),
                       base_url="http://127.0.0.1")
        first = c.post("/api/launch/sft", json={"values": {"output_dir": "one"}}).json()["job"]
        second = c.post("/api/launch/sft", json={"values": {"output_dir": "two"}}).json()["job"]
        wait_for(lambda: started(folder), what="the first job")
        jobs = {j["id"]: j["status"] for j in c.get("/api/jobs").json()["jobs"]}
        assert jobs == {first["id"]: "running", second["id"]: "queued"}
        assert len(started(folder)) == 1
        again = c.post("/api/launch/sft",
                       json={"values": {"output_dir": "one", "resume": "auto"}})
        assert again.status_code == 422 and "already writes to" in again.json()["general"][0]
