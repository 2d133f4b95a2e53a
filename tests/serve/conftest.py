import pytest

from lmlab.serve import bench

from ..tiny import varied


def live_server(app):
    """A real uvicorn on a free loopback port, in a thread; yields its base URL."""
    return bench.live_server(app, start_timeout=30)


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
