"""Deploy a run: start `lmlab serve` on it (OpenAI API + chat page), quantize it, or export it as
GGUF, each shown as the shell command that does the same.

Serving is a subprocess (an argv list, never a shell string) bound to 127.0.0.1 on a free
port; the servers it started are kept in ``ctx.extra["servers"]`` and stopped on request or
when the studio exits. Quantize and GGUF export are ``lmlab quantize`` jobs on the studio's
queue (one heavy job at a time). Every command is validated by the stage's own ``Config``
first, so a bad value gets the same message as on the command line.

Routes: ``GET /deploy?run=<name>`` (page), ``GET /api/deploy?run=<name>`` (the commands),
``POST /api/deploy/serve``, ``GET /api/deploy/servers``,
``POST /api/deploy/servers/<id>/stop``, ``POST /api/deploy/quantize``.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from lmlab.errors import UserError
from lmlab.studio.body import page, read, user_errors
from lmlab.studio.context import StudioContext
from lmlab.studio.paths import resolve_run

MAX_SERVERS = 4  # each holds a model in memory
HOST = "127.0.0.1"
_ids = itertools.count(1)


class ServeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run: str = Field(max_length=200)
    port: int = Field(0, ge=0, le=65535)  # 0 = a free one


class QuantizeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run: str = Field(max_length=200)
    method: str = Field("int8-weight", max_length=64)
    gguf: Literal["", "f16", "q8_0"] = ""
    overwrite: bool = False


# ----------------------------------------------------------------------------- commands


def stage_argv(stage: str, overrides: dict[str, str]) -> list[str]:
    """``lmlab STAGE key=value ...`` after the stage's Config accepted the values (the CLI's
    own messages otherwise, as a ConfigError)."""
    from lmlab.config import load_config
    from lmlab.stages import load_stage

    pairs = [f"{k}={v}" for k, v in overrides.items()]
    load_config(load_stage(stage).Config, None, pairs, stage=stage)
    return ["lmlab", stage, *pairs]


def shell(argv: list[str]) -> str:
    return shlex.join(argv)


def run_folder(ctx: StudioContext, name: str) -> Path:
    path = resolve_run(ctx.root, name)
    if not path.is_dir():
        raise UserError(f"run: {name!r} is not a run folder under {ctx.root}")
    return path


def serve_overrides(path: Path, port: int) -> dict[str, str]:
    return {"model": str(path), "host": HOST, "port": str(port)}


def quantize_overrides(ctx: StudioContext, name: str, method: str, gguf: str = "",
                       overwrite: bool = False) -> dict[str, str]:
    """``lmlab quantize`` keys for a run: ``gguf`` alone exports the float model (method fp32);
    the result goes to a sibling run folder ``<run>-<method>`` / ``<run>-gguf-<type>``."""
    path = run_folder(ctx, name)
    if gguf:
        method = "fp32"
    out = resolve_run(ctx.root, f"{name}-gguf-{gguf}" if gguf else f"{name}-{method}")
    ov = {"model": str(path), "method": method, "output_dir": str(out)}
    if gguf:
        ov["gguf"] = gguf
    if overwrite:
        ov["overwrite"] = "true"
    return ov


def commands(ctx: StudioContext, name: str) -> dict:
    """The shell commands the page shows for a run (port 8000: pick your own)."""
    path = run_folder(ctx, name)
    return {"serve": shell(stage_argv("serve", serve_overrides(path, 8000))),
            "quantize": shell(stage_argv("quantize", quantize_overrides(ctx, name,
                                                                        "int8-weight"))),
            "gguf": shell(stage_argv("quantize", quantize_overrides(ctx, name, "", "q8_0")))}


# ----------------------------------------------------------------------------- servers


@dataclass
class Server:
    id: str
    run: str
    port: int
    argv: list[str]  # what was started (python -m lmlab ...)
    command: str  # what a user types
    log: Path
    proc: subprocess.Popen
    started: float = field(default_factory=time.time)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def state(self) -> dict:
        code = self.proc.poll()
        status = "running" if code is None else f"exited ({code})"
        return {"id": self.id, "run": self.run, "url": self.url, "pid": self.proc.pid,
                "status": status, "ready": code is None and _healthy(self.url),
                "command": self.command, "argv": self.argv, "log": str(self.log),
                "log_tail": _tail(self.log)}

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=0.3) as r:
            return r.status == 200
    except OSError:
        return False


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_bytes()[-n:].decode("utf-8", "replace")
    except OSError:
        return ""


class Servers:
    """The `lmlab serve` processes this studio started."""

    def __init__(self, popen=subprocess.Popen):
        self.popen = popen  # tests pass a fake
        self.items: dict[str, Server] = {}
        self.lock = threading.Lock()
        self.logs = Path(tempfile.mkdtemp(prefix="lmlab-studio-serve-"))
        atexit.register(self.stop_all)

    def start(self, ctx: StudioContext, name: str, port: int = 0) -> Server:
        from lmlab.serve.bench import free_port

        path = run_folder(ctx, name)
        with self.lock:
            live = [s for s in self.items.values() if s.proc.poll() is None]
            if len(live) >= MAX_SERVERS:
                raise UserError(f"{len(live)} servers are running already (at most "
                                f"{MAX_SERVERS}); stop one first")
            port = port or free_port()
            shown = stage_argv("serve", serve_overrides(path, port))
            argv = [sys.executable, "-m", "lmlab", *shown[1:]]
            sid = f"serve-{next(_ids)}"
            log = self.logs / f"{sid}.log"
            with open(log, "wb") as out:
                proc = self.popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=dict(os.environ),
                                  start_new_session=True)
            self.items[sid] = Server(sid, name, port, argv, shell(shown), log, proc)
            return self.items[sid]

    def get(self, sid: str) -> Server:
        if sid not in self.items:
            raise HTTPException(404, f"server: {sid!r} is not a server this studio started")
        return self.items[sid]

    def stop_all(self) -> None:
        for s in list(self.items.values()):
            s.stop()


def servers(ctx: StudioContext) -> Servers:
    return ctx.extra.setdefault("servers", Servers())


# ----------------------------------------------------------------------------- routes


def make_router(ctx: StudioContext) -> APIRouter:
    from lmlab.quant.ptq import METHODS

    r = APIRouter()

    @r.get("/deploy")
    async def deploy_page():
        return page("deploy.html")

    @r.get("/api/deploy")
    async def info(run: str):
        with user_errors():
            return {"run": run, "path": str(run_folder(ctx, run)), "commands": commands(ctx, run),
                    "methods": list(METHODS), "gguf": ["f16", "q8_0"]}

    @r.post("/api/deploy/serve")
    async def serve(request: Request):
        body = await read(request, ServeBody)
        with user_errors():
            started = servers(ctx).start(ctx, body.run, body.port)
        return await asyncio.to_thread(started.state)

    @r.get("/api/deploy/servers")
    async def listing():
        states = [asyncio.to_thread(s.state) for s in list(servers(ctx).items.values())]
        return {"servers": list(await asyncio.gather(*states))}

    @r.post("/api/deploy/servers/{sid}/stop")
    async def stop(sid: str):
        s = servers(ctx).get(sid)
        await asyncio.to_thread(s.stop)
        return await asyncio.to_thread(s.state)

    @r.post("/api/deploy/quantize")
    async def quantize(request: Request):
        body = await read(request, QuantizeBody)
        with user_errors():
            ov = quantize_overrides(ctx, body.run, body.method, body.gguf, body.overwrite)
            command = shell(stage_argv("quantize", ov))
            out = Path(ov["output_dir"])
            if out.exists() and any(out.iterdir()) and not body.overwrite:
                raise UserError(f"output_dir: {out} exists already; tick overwrite "
                                "(overwrite=true) to replace it, or delete it first")
        if ctx.queue is None:
            raise HTTPException(503, "this studio has no job queue")
        job = ctx.queue.submit("quantize", ov)
        return {"job": job, "stage": "quantize", "overrides": ov, "command": command,
                "output_dir": ov["output_dir"]}

    return r
