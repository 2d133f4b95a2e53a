"""The job queue, with a stand-in for ``python -m lmlab`` (conftest.FAKE): one job at a time in
order, argv lists of key=value, stop = SIGINT, resume = the same job with resume=auto."""

from __future__ import annotations

import pytest

from lmlab.errors import ConfigError, UserError
from lmlab.studio.jobs import check_request, log_tail

from .conftest import started, wait_for


def test_one_job_at_a_time_the_second_is_queued(fake_python, tmp_path):
    q, folder = fake_python
    a = q.submit("sft", {"max_steps": "3", "output_dir": str(q.root / "a")})
    b = q.submit("sft", {"max_steps": "4", "output_dir": str(q.root / "b")})
    wait_for(lambda: started(folder), what="the first job")
    assert q.status(a)["status"] == "running" and q.status(b)["status"] == "queued"
    assert started(folder) == [["-m", "lmlab", "sft", "max_steps=3",
                                f"output_dir={q.root / 'a'}"]]
    wait_for(lambda: "step 1/3" in q.status(a)["progress"], what="the progress line")
    (folder / "release").touch()
    assert q.wait(a, timeout=20)["status"] == "finished"
    wait_for(lambda: len(started(folder)) == 2, what="the second job")
    assert q.status(b)["status"] == "running"
    assert q.status(b)["command"] == f"lmlab sft max_steps=4 output_dir={q.root / 'b'}"
    (folder / "release").touch()
    assert q.wait(b, timeout=20)["status"] == "finished"
    assert [j["id"] for j in q.status()] == [b, a]


def test_stop_sends_sigint_and_resume_continues(fake_python):
    q, folder = fake_python
    out = str(q.root / "a")
    a = q.submit("sft", {"output_dir": out, "overwrite": "true"})
    queued = q.submit("sft", {"output_dir": str(q.root / "b")})
    wait_for(lambda: started(folder), what="the job")
    assert q.stop(queued)["status"] == "cancelled"
    assert q.stop(a)["status"] == "stopping"
    done = q.wait(a, timeout=20)
    assert (done["status"], done["rc"]) == ("stopped", 130)
    again = q.resume(a)
    wait_for(lambda: len(started(folder)) == 2, what="the resumed job")
    # the same keys, resume=auto, and never overwrite (it would delete the checkpoint)
    assert started(folder)[1] == ["-m", "lmlab", "sft", f"output_dir={out}", "resume=auto"]
    with pytest.raises(UserError, match="stop it before resuming"):
        q.resume(again)
    with pytest.raises(UserError, match="already writes to"):
        q.submit("sft", {"output_dir": out})
    (folder / "release").touch()
    assert q.wait(again, timeout=20)["status"] == "finished"


def test_only_stage_names_and_config_keys():
    with pytest.raises(UserError, match="unknown stage"):
        check_request("sft; rm -rf ~", {})
    with pytest.raises(ConfigError, match="unknown key 'max_stepz'"):
        check_request("sft", {"max_stepz": "3"})
    with pytest.raises(UserError, match="not a config key"):
        check_request("sft", {"--config": "x"})
    with pytest.raises(UserError, match="not a config key"):
        check_request("sft", {"model": "a\nb"})
    with pytest.raises(UserError, match="keys and values are text"):
        check_request("sft", {"max_steps": 3})


def test_log_tail_shows_the_progress_bar_as_a_terminal_would(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("$ lmlab sft\nsft:  10%|#  | 1/10\rsft:  20%|## | 2/10\rsft:  30%|### | 3/10")
    assert log_tail(log, 5) == ["$ lmlab sft", "sft:  30%|### | 3/10"]


def test_a_run_is_resumed_from_its_saved_config(fake_python):
    from fastapi.testclient import TestClient

    from lmlab.studio.app import create_app
    from lmlab.studio.context import StudioContext

    from .conftest import make_run

    q, folder = fake_python
    path = make_run(q.root, "old", checkpoint=5, lr=0.001, overwrite=True, lora_targets=["q"])
    c = TestClient(create_app(StudioContext(root=q.root, queue=q)), base_url="http://127.0.0.1")
    job = c.post("/api/runs/old/resume", json={}).json()["job"]
    wait_for(lambda: started(folder), what="the resumed job")
    # the saved keys that differ from the defaults, the folder itself, resume=auto; never
    # overwrite (it would delete the checkpoint being resumed)
    assert started(folder)[0] == ["-m", "lmlab", "sft", "model=tiny:llama", "max_steps=10",
                                  "lr=0.001", "lora_targets=q", f"output_dir={path}",
                                  "resume=auto"]
    assert c.get("/api/runs").json()["rows"][0]["status"] == "running"
    assert c.get(f"/api/jobs/{job['id']}").json()["status"] == "running"
    r = c.post("/api/runs/nothing-here/resume", json={})
    assert r.status_code == 404
