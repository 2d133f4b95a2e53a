import contextlib
import socket
import threading
import time

import pytest

from ..tiny import varied


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(app):
    """A real uvicorn on a free loopback port, in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not t.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(timeout=30)


def make_app(tokenizer, model=None, **cfg):
    from lmlab.stages.serve import Config, build

    c = Config(model="tiny:llama", **cfg)
    return build(c, model=model if model is not None else varied(), tokenizer=tokenizer)


@pytest.fixture(scope="module")
def server(tokenizer):
    """A tiny-model server shared by a test module: (base URL, engine)."""
    app, engine = make_app(tokenizer, max_batch_size=8, max_waiting=128, max_tokens=64,
                           default_max_tokens=16)
    with live_server(app) as url:
        yield url, engine
