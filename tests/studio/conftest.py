"""Studio fixtures: fake run folders, an app over them, a live server, a stand-in for Python."""

from __future__ import annotations

import contextlib
import json
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

from lmlab.studio.app import create_app
from lmlab.studio.context import StudioContext
from lmlab.studio.jobs import JobQueue


def make_run(root: Path, name: str, *, stage: str = "sft", rows: int = 3, config: bool = True,
             summary: bool = False, checkpoint: int = 0, old: bool = True, **cfg) -> Path:
    """A run folder as the stages write it; ``old``: its files are an hour old (not running)."""
    path = Path(root) / name
    path.mkdir(parents=True)
    if config:
        body = {"stage": stage, "model": "tiny:llama", "max_steps": 10, **cfg}
        (path / "config.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    with open(path / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps({"step": i, "train/loss": 3.0 / i, "train/lr": 1e-3}) + "\n"
                     for i in range(1, rows + 1))
    if summary:
        (path / "summary.json").write_text(json.dumps({"stage": stage, "final_loss": 1.5,
                                                       "eval_after": {"eval/accuracy": 0.25}}))
    if checkpoint:
        ck = path / "checkpoints" / f"step-{checkpoint}"
        ck.mkdir(parents=True)
        (ck / "state.pt").write_bytes(b"x")
    if old:
        age(path, 3600)
    return path


def age(path: Path, seconds: float) -> None:
    """Set the mtimes of everything under ``path`` ``seconds`` into the past."""
    import os

    t = time.time() - seconds
    for p in [path, *path.rglob("*")]:
        os.utime(p, (t, t))


def client(root: Path, token: str | None = None, queue=None):
    from fastapi.testclient import TestClient

    ctx = StudioContext(root=Path(root), token=token, queue=queue or JobQueue(root))
    return TestClient(create_app(ctx), base_url="http://127.0.0.1")


@contextlib.contextmanager
def live(app):
    """``app`` under a real uvicorn on a free loopback port (a thread); yields its URL."""
    import uvicorn

    from lmlab.serve.bench import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           timeout_graceful_shutdown=1))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert t.is_alive() and time.monotonic() < deadline, "the studio did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        app.state.ctx.extra["closing"] = True  # event streams end (as on Ctrl-C)
        server.should_exit = True
        t.join(timeout=30)


# A stand-in for ``python -m lmlab STAGE key=value ...``: records its argv, says it started,
# then waits for a file named "release" beside it; SIGINT exits 130 as the CLI does.
FAKE = textwrap.dedent("""\
    import json, os, signal, sys, time
    here = os.path.dirname(os.path.abspath(__file__))
    signal.signal(signal.SIGINT, lambda *a: sys.exit(130))
    with open(os.path.join(here, "started.jsonl"), "a") as f:
        f.write(json.dumps(sys.argv[1:]) + "\\n")
    print("step 1/3 working", flush=True)
    while not os.path.exists(os.path.join(here, "release")):
        time.sleep(0.05)
    os.remove(os.path.join(here, "release"))
    print("done", flush=True)
""")


@contextlib.contextmanager
def fake_queue(tmp_path: Path):
    """(queue over tmp_path/runs whose 'python' is the stand-in, folder of the stand-in)."""
    folder = tmp_path / "fake"
    folder.mkdir()
    script = folder / "python"
    script.write_text(f"#!{sys.executable}\n" + FAKE)
    script.chmod(0o755)
    root = tmp_path / "runs"
    root.mkdir()
    q = JobQueue(root, python=str(script))
    yield q, folder
    (folder / "release").touch()
    q.close(timeout=10)


@pytest.fixture()
def fake_python(tmp_path):
    with fake_queue(tmp_path) as out:
        yield out


def started(folder: Path) -> list[list[str]]:
    f = folder / "started.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines()] if f.exists() else []


def wait_for(cond, timeout: float = 20.0, what: str = "the condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = cond()
        if out:
            return out
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
