"""The studio's job queue: stages run as ``python -m lmlab STAGE key=value ...`` subprocesses,
one at a time (a 2-core machine trains one model well, two badly), the rest wait in order.

Only known stage names and known config keys are accepted, and the command is an argv list
(never a shell string), so a value cannot become a second command. ``stop`` sends SIGINT: the
training loop finishes its step, saves a checkpoint and exits (``train/interrupt.py``); a second
``stop`` quits at once. ``resume`` queues the same job again with ``resume=auto``.
Each job's output (the CLI's progress bar included) goes to ``<root>/.studio/jobs/<id>.log``.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from lmlab.errors import UserError

# stages the form does not start: the studio itself, and the long-lived server (deploy starts
# that one beside the queue)
NOT_LAUNCHED = {"studio", "serve"}
ACTIVE = ("queued", "running", "stopping")


def launchable() -> list[str]:
    from lmlab.stages import STAGES

    return [s for s in STAGES if s not in NOT_LAUNCHED]


def check_request(stage: str, overrides: dict[str, str]) -> None:
    """A UserError unless ``stage`` is a launchable stage and every key is one of its config's
    (a mapping's entry as ``key.entry``) with a text value."""
    from lmlab.config import build_config

    if stage not in launchable():
        raise UserError(f"stage: unknown stage {stage!r}; stages: {', '.join(launchable())}")
    if not isinstance(overrides, dict):
        raise UserError("overrides: expected a mapping of key to value")
    for k, v in overrides.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise UserError(f"overrides: {k!r}: keys and values are text")
        if k.startswith("-") or "\n" in k or "\n" in v:
            raise UserError(f"overrides: {k!r} is not a config key")
    from lmlab.stages import load_stage

    build_config(load_stage(stage).Config, {}, overrides)  # ConfigError: the CLI's messages


@dataclass
class Job:
    id: str
    stage: str
    overrides: dict[str, str]
    argv: list[str]
    log: Path
    status: str = "queued"  # queued running stopping finished failed stopped cancelled
    rc: int | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    proc: subprocess.Popen | None = None

    @property
    def run(self) -> Path | None:
        out = self.overrides.get("output_dir")
        return Path(out).resolve() if out else None

    def command(self) -> str:
        """The same job as a line a user can type (``lmlab`` for ``python -m lmlab``)."""
        import shlex

        return "lmlab " + " ".join(shlex.quote(a) for a in self.argv[3:])

    def public(self, tail_lines: int = 12) -> dict:
        lines = log_tail(self.log, tail_lines) if self.status != "queued" else []
        return {"id": self.id, "stage": self.stage, "overrides": self.overrides,
                "status": self.status, "rc": self.rc, "command": self.command(),
                "run": str(self.run) if self.run else None, "created": self.created,
                "started": self.started, "ended": self.ended,
                "progress": lines[-1] if lines else "", "log": lines}


def log_tail(path: Path, n: int, max_bytes: int = 16384) -> list[str]:
    """The last ``n`` lines of a job's output as a terminal shows them: a progress bar redraws
    its line with ``\\r``, so each line is what follows its last ``\\r``."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - max_bytes))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    lines = [ln.rstrip("\r").rsplit("\r", 1)[-1] for ln in text.split("\n")]
    return [ln for ln in lines if ln.strip()][-n:]


class JobQueue:
    """``submit`` -> job id; one job runs at a time, in order; ``status``, ``stop``, ``resume``,
    ``close`` (stops the running job, keeping its checkpoint, and drops the queued ones)."""

    def __init__(self, root: Path, *, cwd: Path | None = None, env: dict | None = None,
                 python: str = sys.executable):
        self.root = Path(root).resolve()
        self.cwd = Path(cwd or os.getcwd())
        self.env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
        self.python = python
        self.jobs: dict[str, Job] = {}
        self._ids = itertools.count(1)
        self._cv = threading.Condition()
        self._closed = False
        self._worker: threading.Thread | None = None

    # ------------------------------------------------------------------ requests

    def submit(self, stage: str, overrides: dict[str, str]) -> str:
        check_request(stage, overrides)
        with self._cv:
            if self._closed:
                raise UserError("the studio is shutting down; no new jobs")
            run = Path(overrides["output_dir"]).resolve() if overrides.get("output_dir") else None
            busy = [j for j in self.jobs.values() if j.status in ACTIVE and run and j.run == run]
            if busy:
                raise UserError(f"output_dir: job {busy[0].id} ({busy[0].status}) already "
                                f"writes to {run}; stop it or choose another output_dir")
            job_id = f"{next(self._ids)}-{stage}"
            argv = [self.python, "-m", "lmlab", stage,
                    *(f"{k}={v}" for k, v in overrides.items())]
            log = self.root / ".studio" / "jobs" / f"{job_id}.log"
            self.jobs[job_id] = Job(job_id, stage, dict(overrides), argv, log)
            self._start_worker()
            self._cv.notify_all()
        return job_id

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id) if isinstance(job_id, str) else None
        if job is None:
            raise UserError(f"job: no job {job_id!r}")
        return job

    def status(self, job_id: str | None = None):
        """One job's state (a dict), or every job's, newest first."""
        if job_id is not None:
            return self.get(job_id).public()
        return [j.public(tail_lines=3) for j in reversed(list(self.jobs.values()))]

    def by_run(self) -> dict[Path, dict]:
        """The newest job's state for each run folder a job writes to."""
        out = {}
        for j in self.jobs.values():
            if j.run is not None:
                out[j.run] = {"id": j.id, "status": j.status, "progress": ""}
        return out

    def stop(self, job_id: str) -> dict:
        """A queued job is cancelled; a running one gets SIGINT (it saves a checkpoint at the
        end of its step and exits); a second stop sends SIGINT again (quit at once)."""
        with self._cv:
            job = self.get(job_id)
            if job.status == "queued":
                job.status, job.ended = "cancelled", time.time()
            elif job.status in ("running", "stopping") and job.proc is not None:
                job.status = "stopping"
                try:
                    job.proc.send_signal(signal.SIGINT)
                except ProcessLookupError:
                    pass
            self._cv.notify_all()
            return job.public()

    def resume(self, job_id: str) -> str:
        """Queue ``job_id`` again with ``resume=auto`` (from its last checkpoint)."""
        job = self.get(job_id)
        if job.status in ACTIVE:
            raise UserError(f"job {job_id} is {job.status}; stop it before resuming")
        overrides = {k: v for k, v in job.overrides.items() if k != "overwrite"}
        overrides["resume"] = "auto"
        return self.submit(job.stage, overrides)

    def wait(self, job_id: str, timeout: float | None = None) -> dict:
        """Block until ``job_id`` is no longer queued or running (tests, scripts)."""
        end = None if timeout is None else time.time() + timeout
        with self._cv:
            while self.get(job_id).status in ACTIVE:
                left = None if end is None else end - time.time()
                if left is not None and left <= 0:
                    break
                self._cv.wait(left if left is not None else 1.0)
        return self.get(job_id).public()

    def close(self, timeout: float = 30.0) -> None:
        with self._cv:
            self._closed = True
            for job in self.jobs.values():
                if job.status == "queued":
                    job.status = "cancelled"
            running = [j for j in self.jobs.values() if j.status in ("running", "stopping")]
            self._cv.notify_all()
        for job in running:
            self.stop(job.id)
            try:
                job.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                job.proc.kill()

    # ------------------------------------------------------------------ the worker

    def _start_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="studio-jobs", daemon=True)
            self._worker.start()

    def _next(self) -> Job | None:
        with self._cv:
            while not self._closed:
                job = next((j for j in self.jobs.values() if j.status == "queued"), None)
                if job is not None:
                    job.status, job.started = "running", time.time()
                    job.log.parent.mkdir(parents=True, exist_ok=True)
                    with open(job.log, "wb") as out:
                        out.write(f"$ {job.command()}\n".encode())
                        out.flush()
                        # its own session: a Ctrl-C in the studio's terminal does not reach it
                        # (close() stops it, so it still saves its checkpoint)
                        try:
                            job.proc = subprocess.Popen(
                                job.argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=self.cwd, env=self.env,
                                start_new_session=True)
                        except OSError as e:
                            out.write(f"lmlab studio: cannot start the job: {e}\n".encode())
                            job.status, job.ended = "failed", time.time()
                            self._cv.notify_all()
                            continue
                    return job
                self._cv.wait()
        return None

    def _work(self) -> None:
        while (job := self._next()) is not None:
            rc = job.proc.wait()
            with self._cv:
                job.rc, job.ended = rc, time.time()
                if rc == 0:
                    job.status = "finished"
                elif job.status == "stopping" or rc == 130:
                    job.status = "stopped"
                else:
                    job.status = "failed"
                self._cv.notify_all()

