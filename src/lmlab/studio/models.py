"""The models the studio chats with: a name from a request -> a model reference -> a running
serving engine (``lmlab.serve.engine.Engine``), loaded on first use and kept in a small cache.

Names a request may use: a run folder under the studio's root (its ``final/``), ``base`` (the
studio's base model, ``ctx.extra["base_model"]``), a model alias (``smollm2-135m-instruct``) or
``tiny:<preset>``. Nothing else: a request never names a path or a hub id, so it can only load
what the root holds or what is installed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from lmlab.errors import UserError
from lmlab.studio.context import StudioContext
from lmlab.studio.paths import resolve_run

DEFAULT_BASE = "smollm2-135m-instruct"
MAX_LOADED = 2  # engines kept in memory; the least recently used one is shut down


class UnknownModel(UserError):
    http_status = 404


def reference(ctx: StudioContext, name: str) -> str:
    """The model reference behind the request's ``name`` (see the module docstring)."""
    from lmlab.models.registry import ALIASES

    if not isinstance(name, str) or not name.strip():
        raise UserError("model: give a run name, 'base', an alias or tiny:<preset>")
    if name == "base":
        return ctx.extra.get("base_model", DEFAULT_BASE)
    if name in ALIASES:
        return name
    if name.startswith("tiny:"):
        from lmlab.models.load import resolve

        return resolve(name).ref
    from lmlab.models.load import resolve

    path = resolve_run(ctx.root, name)
    if not path.is_dir():
        raise UnknownModel(f"model: {name!r} is not a run folder under {ctx.root}, nor 'base', "
                        "an alias or tiny:<preset>")
    return resolve(str(path)).ref  # a folder without a loadable model fails here, named


def choices(ctx: StudioContext) -> list[str]:
    """What the pages offer: ``base`` and every run under the root that has a saved model."""
    root = Path(ctx.root)
    runs = sorted(p.name for p in (root.iterdir() if root.is_dir() else ())
                  if p.is_dir() and ((p / "final").is_dir() or (p / "config.json").is_file()))
    return ["base", *runs]


@dataclass
class Loaded:
    name: str
    ref: str
    engine: object  # lmlab.serve.engine.Engine (started)
    tokenizer: object


def serve_engine(ref: str) -> tuple[object, object]:
    """(engine, tokenizer) for ``ref`` through ``lmlab serve``'s own builder, small batch."""
    from lmlab.stages.serve import Config, build

    _, engine = build(Config(model=ref, max_batch_size=4, max_waiting=16, max_tokens=1024,
                             kv_budget_tokens=8192, prefix_cache_tokens=0, log_level="error"))
    return engine, engine.tokenizer


class ModelCache:
    """At most ``size`` started engines, least recently used evicted (and shut down).
    ``load(ref) -> (engine, tokenizer)`` builds one; tests pass a tiny in-process model."""

    def __init__(self, load: Callable[[str], tuple[object, object]] = serve_engine,
                 size: int = MAX_LOADED):
        self.load, self.size = load, size
        self.items: OrderedDict[str, Loaded] = OrderedDict()
        self.lock = threading.Lock()  # one load at a time; a second asker waits for it

    def get(self, name: str, ref: str) -> Loaded:
        with self.lock:
            if ref in self.items:
                self.items.move_to_end(ref)
                return self.items[ref]
            try:
                engine, tokenizer = self.load(ref)
            except UserError:
                raise
            except (OSError, ValueError) as e:
                raise UserError(f"model: {name!r} could not be loaded: {e}") from None
            engine.start()
            self.items[ref] = Loaded(name, ref, engine, tokenizer)
            while len(self.items) > self.size:
                _, old = self.items.popitem(last=False)
                old.engine.shutdown()
            return self.items[ref]

    def loaded(self) -> list[str]:
        return [x.name for x in self.items.values()]

    def close(self) -> None:
        with self.lock:
            for x in self.items.values():
                x.engine.shutdown()
            self.items.clear()


def cache(ctx: StudioContext) -> ModelCache:
    """The context's model cache (made on first use)."""
    return ctx.extra.setdefault("models", ModelCache())


@dataclass
class Knobs:
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 128
    seed: int | None = None


def encode(m: Loaded, messages: list[dict], max_tokens: int) -> list[int]:
    """Prompt ids of ``messages`` (chat template); UserError when they do not fit."""
    from lmlab.infer.decode import encode_prompts
    from lmlab.serve.scheduler import RequestTooLarge

    ids = encode_prompts(m.tokenizer, [messages])[0]
    try:
        m.engine.check(len(ids), max_tokens)
    except RequestTooLarge as e:
        raise UserError(f"messages: {e}") from None
    return ids


async def stream(m: Loaded, ids: list[int], knobs: Knobs) -> AsyncIterator[tuple[str, str | None]]:
    """(text piece, finish reason on the last piece) as the engine produces them; leaving the
    loop early (a client that went away) aborts the request."""
    from lmlab.infer.sampling import SamplingParams
    from lmlab.serve.scheduler import QueueFull

    params = SamplingParams(max_new_tokens=knobs.max_tokens, temperature=knobs.temperature,
                            top_p=knobs.top_p, seed=knobs.seed)
    try:
        req = m.engine.submit(ids, [params])
    except QueueFull as e:
        raise UserError(f"model {m.name!r} is busy: {e}") from None
    done = False
    try:
        async for d in req.events():
            yield d.text, d.finish_reason
        done = True
    finally:
        if not done:
            m.engine.abort(req)


async def complete(m: Loaded, ids: list[int], knobs: Knobs) -> tuple[str, str]:
    """The whole reply and its finish reason."""
    text, why = "", "stop"
    async for piece, reason in stream(m, ids, knobs):
        text += piece
        why = reason or why
    return text, why
