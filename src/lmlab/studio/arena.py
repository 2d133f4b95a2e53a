"""Chat and arena: talk to any run's model (or the base) through the serving engine, or put two
models side by side on one prompt and turn the vote into a preference pair for dpo / reward.

Routes: ``GET /chat``, ``GET /arena`` (pages), ``GET /api/models`` (what to pick from),
``POST /api/chat`` (one reply, streamed as server-sent events with ``stream: true``),
``POST /api/arena/pair`` (two anonymous replies A and B) and ``POST /api/arena/vote``.
``GET /ui/<file>`` serves the pages' shared stylesheet and scripts.
"""

from __future__ import annotations

import asyncio
import json
import random
from importlib import resources
from typing import Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from lmlab.studio import models as M
from lmlab.studio.body import page, read, user_errors
from lmlab.studio.context import StudioContext
from lmlab.studio.preferences import Pair, arena

MAX_CHARS = 32_000  # one message or prompt
MAX_TOKENS = 1024

# the files the pages load: /ui/<name> -> (package, file); the chat look and the stream
# reader are lmlab serve's own, so the two chat pages can't drift apart
ASSETS = {"chat.css": ("lmlab.serve", "chat.css", "text/css"),
          "sse.js": ("lmlab.serve", "sse.js", "text/javascript"),
          "talk.css": ("lmlab.studio", "talk.css", "text/css"),
          "talk.js": ("lmlab.studio", "talk.js", "text/javascript")}


class Decoding(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(128, ge=1, le=MAX_TOKENS)
    seed: int | None = Field(None, ge=0, lt=2**63)

    def knobs(self) -> M.Knobs:
        return M.Knobs(self.temperature, self.top_p, self.max_tokens, self.seed)


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_CHARS)


class ChatBody(Decoding):
    model: str = Field(max_length=200)
    messages: list[Message] = Field(min_length=1, max_length=200)
    stream: bool = False


class PairBody(Decoding):
    model_a: str = Field(max_length=200)
    model_b: str = Field(max_length=200)
    prompt: str = Field(max_length=MAX_CHARS)
    system: str = Field("", max_length=MAX_CHARS)


class VoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pair: str = Field(max_length=64)
    winner: Literal["A", "B", "tie"]


def make_router(ctx: StudioContext) -> APIRouter:
    r = APIRouter()

    @r.get("/chat")
    async def chat_page():
        return page("chat.html")

    @r.get("/arena")
    async def arena_page():
        return page("arena.html")

    @r.get("/ui/{name}")
    async def asset(name: str):
        if name not in ASSETS:
            raise HTTPException(404, f"no such file: {name}")
        package, file, kind = ASSETS[name]
        return PlainTextResponse((resources.files(package) / "static" / file).read_text(),
                                 media_type=kind)

    @r.get("/api/models")
    async def models():
        return {"models": M.choices(ctx), "loaded": M.cache(ctx).loaded(),
                "preferences_file": str(arena(ctx).path)}

    @r.post("/api/chat")
    async def chat(request: Request):
        body = await read(request, ChatBody)
        msgs = [m.model_dump() for m in body.messages]
        if msgs[-1]["role"] != "user" or not msgs[-1]["content"].strip():
            raise HTTPException(400, "messages: the last message must be a non-empty user turn")
        m, ids = await _prepare(ctx, body.model, msgs, body.max_tokens)
        if body.stream:
            return _sse(m, ids, body.knobs())
        with user_errors():
            text, why = await M.complete(m, ids, body.knobs())
        return {"model": body.model, "text": text, "finish_reason": why}

    @r.post("/api/arena/pair")
    async def pair(request: Request):
        body = await read(request, PairBody)
        if not body.prompt.strip():
            raise HTTPException(400, "prompt: must not be empty")
        msgs = ([{"role": "system", "content": body.system}] if body.system.strip() else []) \
            + [{"role": "user", "content": body.prompt}]
        a, ids_a = await _prepare(ctx, body.model_a, msgs, body.max_tokens)
        b, ids_b = await _prepare(ctx, body.model_b, msgs, body.max_tokens)
        knobs = body.knobs()
        with user_errors():
            (ta, _), (tb, _) = await asyncio.gather(M.complete(a, ids_a, knobs),
                                                    M.complete(b, ids_b, knobs))
        sides = [(body.model_a, ta), (body.model_b, tb)]
        ctx.extra.get("rng", random).shuffle(sides)  # anonymous: the page can't tell which
        prompt = msgs if len(msgs) > 1 else body.prompt
        pid = arena(ctx).open(Pair(prompt, {"A": sides[0][1], "B": sides[1][1]},
                                   {"A": sides[0][0], "B": sides[1][0]},
                                   body.model_dump(exclude={"model_a", "model_b", "prompt",
                                                            "system"})))
        return {"pair": pid, "A": sides[0][1], "B": sides[1][1],
                "identical": sides[0][1] == sides[1][1]}

    @r.post("/api/arena/vote")
    async def vote(request: Request):
        body = await read(request, VoteBody)
        with user_errors():
            return arena(ctx).vote(body.pair, body.winner)

    return r


async def _prepare(ctx: StudioContext, name: str, msgs: list[dict], max_tokens: int):
    """(loaded model, prompt ids); loading happens off the event loop."""
    with user_errors():
        ref = M.reference(ctx, name)
        m = await asyncio.to_thread(M.cache(ctx).get, name, ref)
        return m, M.encode(m, msgs, max_tokens)


def _sse(m: M.Loaded, ids: list[int], knobs: M.Knobs) -> StreamingResponse:
    """``data: {"text": ...}`` per piece, then ``data: {"finish_reason": ...}`` and
    ``data: [DONE]``; a client that leaves aborts the generation."""
    async def events():
        async for piece, why in M.stream(m, ids, knobs):
            if piece:
                yield f"data: {json.dumps({'text': piece})}\n\n"
            if why:
                yield f"data: {json.dumps({'finish_reason': why})}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})
