"""Fixtures shared by the stage tests."""

import pytest


@pytest.fixture
def loop_spy(monkeypatch):
    """Records what a stage hands the shared loop (``objective``, ``stream``, ``kw``: the keyword
    arguments) and still runs the real ``lmlab.train.loop.train``."""
    from lmlab.train import loop

    seen = {}
    real = loop.train

    def spy(model, objective, stream, cfg, run, **kw):
        seen.update(objective=objective, stream=stream, kw=kw)
        return real(model, objective, stream, cfg, run, **kw)

    monkeypatch.setattr(loop, "train", spy)
    return seen
