"""A studio app made of the chat/arena and deploy routers over a fake context: a temporary runs
root, a job queue that records what it was given, and tiny in-process models (seeded, varied).
(Helpers, not a conftest: each test module names its own fixtures.)"""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

from ..tiny import varied


class FakeQueue:
    """What the deploy routes need of studio's JobQueue: ``submit(stage, overrides) -> id``."""

    def __init__(self):
        self.jobs: list[tuple[str, dict[str, str]]] = []

    def submit(self, stage: str, overrides: dict[str, str]) -> str:
        self.jobs.append((stage, dict(overrides)))
        return f"job-{len(self.jobs)}"


def tiny_loader(tokenizer):
    """``ModelCache`` loader for ``tiny:<preset>``: a varied tiny model (its greedy replies are
    not one repeated token) behind lmlab serve's engine."""
    def load(ref: str):
        from lmlab.stages.serve import Config, build

        preset = ref.split(":", 1)[1]
        _, engine = build(Config(model=ref, max_batch_size=4, max_tokens=64,
                                 default_max_tokens=16, prefix_cache_tokens=0),
                          model=varied(preset, seed=len(preset)), tokenizer=tokenizer)
        return engine, tokenizer

    return load


def make_ctx(root: Path, tokenizer, **extra):
    from lmlab.studio.context import StudioContext
    from lmlab.studio.models import ModelCache

    extra.setdefault("models", ModelCache(tiny_loader(tokenizer)))
    extra.setdefault("rng", random.Random(0))
    return StudioContext(root=Path(root), queue=FakeQueue(), extra=extra)


def make_app(ctx):
    from fastapi import FastAPI

    from lmlab.studio import arena, deploy

    app = FastAPI()
    app.include_router(arena.make_router(ctx))
    app.include_router(deploy.make_router(ctx))
    return app


@contextlib.contextmanager
def studio_ctx(tmp_path: Path, tokenizer):
    c = make_ctx(tmp_path / "runs", tokenizer)
    c.root.mkdir()
    try:
        yield c
    finally:
        c.extra["models"].close()


@contextlib.contextmanager
def studio_client(ctx):
    from fastapi.testclient import TestClient

    with TestClient(make_app(ctx), raise_server_exceptions=False) as c:
        yield c
