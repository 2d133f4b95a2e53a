"""`lmlab studio`: a local web app over a folder of runs - the runs table with live curves,
compare, a launch form with a job queue, chat, arena votes and deploy (docs/studio.md).

Binds 127.0.0.1 by default; any other address needs a ``token`` (every request then carries
it). The app is built by ``lmlab.studio.app.create_app`` and served by uvicorn until Ctrl-C,
which stops the running job the way Ctrl-C stops a training run: it saves a checkpoint first.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from lmlab.config import opt

HELP = "a local web app to launch, watch, compare, chat with, judge and deploy runs"


@dataclass
class Config:
    root: str = opt("runs", "the folder of run folders to list, launch into and serve (nothing "
                            "outside it is reachable)")
    host: str = opt("127.0.0.1", "address to listen on; anything but loopback needs a token")
    port: int = opt(7860, "TCP port", min=0, max=65535)
    token: str = opt("", "require this token on every request (Authorization: Bearer, or "
                         "open the printed link once); empty = none, loopback only")
    log_level: str = opt("warning", "uvicorn log level",
                         choices=("critical", "error", "warning", "info", "debug"))

    def validate(self) -> list[str]:
        if not self.token and not is_loopback(self.host):
            return [(f"token: host {self.host} is reachable from other machines; set token=<a "
                     f"long random secret> (or bind host=127.0.0.1)")]
        return []


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def _Server(config, ctx):
    """uvicorn's server, telling the app's event streams to end as soon as Ctrl-C comes (else
    uvicorn waits for every open browser tab's stream before it shuts down)."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            ctx.extra["closing"] = True
            super().handle_exit(sig, frame)

    return Server(config)


def run(cfg: Config) -> dict:
    from pathlib import Path

    import uvicorn

    from lmlab.studio.app import create_app
    from lmlab.studio.context import StudioContext
    from lmlab.studio.jobs import JobQueue

    root = Path(cfg.root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    ctx = StudioContext(root=root, token=cfg.token or None, queue=JobQueue(root))
    app = create_app(ctx)
    shown = "127.0.0.1" if cfg.host in ("0.0.0.0", "::") else cfg.host
    link = f"http://{shown}:{cfg.port}/" + (f"?token={cfg.token}" if cfg.token else "")
    print(f"[lmlab] studio over {root}: {link} (Ctrl-C stops it; a running job saves a "
          f"checkpoint first)", flush=True)
    server = _Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level,
                                    timeout_graceful_shutdown=5), ctx)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: the normal way out
        pass
    print("[lmlab] studio stopped", flush=True)
    return {"root": str(root), "host": cfg.host, "port": cfg.port}
