"""The HTTP layer: OpenAI-compatible routes over an engine, plus /health, /metrics and the chat
page at /. It tokenizes, validates and formats; all generation happens in the engine.

Errors use OpenAI's body ``{"error": {message, type, param, code}}``: 400 bad values or a
prompt too long, 401 missing/wrong API key, 404 unknown model or route, 413 body over
``max_request_bytes``, 422 malformed fields (wrong types, out of range), 429 queue full (with
``Retry-After``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from importlib import resources

from fastapi import FastAPI, Request as HTTPRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmlab.errors import UserError
from lmlab.serve import protocol as P
from lmlab.serve.scheduler import QueueFull, RequestTooLarge


@dataclass
class Limits:
    api_key: str = ""
    max_request_bytes: int = 1 << 20
    max_tokens: int = 1024  # the most one request may ask for
    default_max_tokens: int = 256  # chat requests that do not say
    max_n: int = 8
    retry_after_s: int = 1


class APIError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.body = status, P.error_body(message, type, param, code)
        self.headers = headers


def build_app(engine, tokenizer, model_name: str, limits: Limits | None = None,
              embedder=None) -> FastAPI:
    """The app; serving it (uvicorn, or a TestClient used as a context manager) starts the
    engine's thread, and stopping it stops the thread. ``embedder`` (an
    ``lmlab.embed.serving.Embedder``) adds ``/v1/embeddings``."""
    limits = limits or Limits()

    @contextlib.asynccontextmanager
    async def lifespan(_):
        engine.start()
        try:
            yield
        finally:
            await asyncio.to_thread(engine.shutdown)
            if embedder is not None:
                await asyncio.to_thread(embedder.shutdown)

    app = FastAPI(title="lmlab serve", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.engine = engine
    app.state.embedder = embedder
    _errors(app)
    app.add_middleware(_Guard, limits=limits)
    started = int(time.time())

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return chat_page()

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_name}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics():
        return PlainTextResponse(engine.metrics.render(),
                                 media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models():
        names = [model_name] + ([embedder.name] if embedder is not None else [])
        return {"object": "list", "data": [{"id": n, "object": "model", "created": started,
                                            "owned_by": "lmlab"} for n in names]}

    if embedder is not None:
        @app.post("/v1/embeddings")
        async def embeddings(body: P.EmbeddingRequest):
            return await _embeddings(embedder, body)

    @app.post("/v1/chat/completions")
    async def chat(body: P.ChatRequest, http: HTTPRequest):
        _check_model(body.model, model_name)
        _check_logit_bias(body, len(tokenizer))
        ids = _encode(tokenizer, body.chat())
        max_tokens = _max_tokens(body, limits, engine, len(ids), "messages")
        params = [body.sampling(max_tokens, i, body.logprobs) for i in range(_n(body, limits))]
        reqs = [_submit(engine, ids, params, body.top_logprobs if body.logprobs else 0,
                        limits)]
        fmt = _ChatFormat(model_name, body.n)
        if body.stream:
            return _sse(engine, reqs, [0], fmt, body.include_usage, http)
        return await _collect(engine, reqs, [0], fmt, http)

    @app.post("/v1/completions")
    async def completions(body: P.CompletionRequest, http: HTTPRequest):
        _check_model(body.model, model_name)
        _check_logit_bias(body, len(tokenizer))
        if body.echo:
            raise APIError(400, "echo is not supported", param="echo")
        prompts = body.prompts()
        if not prompts:
            raise APIError(400, "prompt: must not be empty", param="prompt")
        encoded = [_encode(tokenizer, p) for p in prompts]
        n, lp = _n(body, limits), body.logprobs
        mts = [_max_tokens(body, limits, engine, len(ids), "prompt") for ids in encoded]
        reqs = []
        try:
            for ids, mt in zip(encoded, mts):
                params = [body.sampling(mt, i, lp is not None) for i in range(n)]
                reqs.append(_submit(engine, ids, params, lp or 0, limits))
        except APIError:
            for r in reqs:
                engine.abort(r)
            raise
        fmt = _CompletionFormat(model_name)
        offsets = [i * n for i in range(len(reqs))]
        if body.stream:
            return _sse(engine, reqs, offsets, fmt, body.include_usage, http)
        return await _collect(engine, reqs, offsets, fmt, http)

    return app


def static_text(name: str) -> str:
    return (resources.files("lmlab.serve") / "static" / name).read_text()


def chat_page() -> str:
    """The chat page, one self-contained document: chat.html with its stylesheet and stream
    reader inlined (lmlab studio's pages load the same two files)."""
    return static_text("chat.html").replace("/* chat.css */", static_text("chat.css")) \
        .replace("/* sse.js */", static_text("sse.js"))


MAX_EMBED_INPUTS = 2048  # OpenAI's limit on inputs per embeddings request


async def _embeddings(embedder, body) -> dict:
    from lmlab.embed.serving import InputTooLong, as_base64

    _check_model(body.model, embedder.name)
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise APIError(400, "input: give a string or a non-empty list of strings (token "
                            "arrays are not supported here)", param="input")
    if len(texts) > MAX_EMBED_INPUTS:
        raise APIError(400, f"input: at most {MAX_EMBED_INPUTS} inputs, got {len(texts)}",
                       param="input")
    if any(not t for t in texts):
        raise APIError(400, "input: empty strings cannot be embedded", param="input")
    if body.dimensions is not None and body.dimensions != embedder.dim:
        raise APIError(400, f"dimensions: this encoder gives {embedder.dim}", param="dimensions")
    try:
        ids = embedder.tokenize(texts)
    except InputTooLong as e:
        raise APIError(400, str(e), param="input", code="context_length_exceeded") from None
    vectors = await embedder.embed(ids)
    fmt = (as_base64 if body.encoding_format == "base64" else lambda v: v.tolist())
    n_tok = sum(len(x) for x in ids)
    return {"object": "list", "model": embedder.name,
            "data": [{"object": "embedding", "index": i, "embedding": fmt(v)}
                     for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": n_tok, "total_tokens": n_tok}}


# ----------------------------------------------------------------------------- checks


def _errors(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_, e: APIError):
        return JSONResponse(e.body, status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_, e: RequestValidationError):
        status, message, param = _invalid_body(e.errors())
        return JSONResponse(P.error_body(message, param=param), status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_, e: StarletteHTTPException):
        code = "not_found" if e.status_code == 404 else None
        message = str(e.detail)
        if isinstance(e.__cause__, UnicodeDecodeError):  # FastAPI's "error parsing the body"
            u = e.__cause__
            message = f"the body is not UTF-8 JSON: byte {u.object[u.start]:#04x} at offset " \
                      f"{u.start} is not UTF-8"
        return JSONResponse(P.error_body(message, code=code), status_code=e.status_code)


# what a union-typed field accepts, for the message when a value fits none of its forms
_FORMS = {"stop": f"a string or a list of at most {P.MAX_STOP} strings",
          "prompt": "a string or a list of strings",
          "content": "a string, null, or a list of text parts ({\"type\": \"text\", \"text\": ...})"}


def _invalid_body(errs: list[dict]) -> tuple[int, str, str | None]:
    """pydantic's errors -> (status, message, param): one line per field, the field named as
    OpenAI names it (``messages.[0].role``), union branches folded into one line."""
    if not errs:
        return 422, "invalid request body", None
    first = errs[0]
    if first.get("type") == "json_invalid":
        pos = first["loc"][1] if len(first.get("loc", ())) > 1 else "?"
        why = (first.get("ctx") or {}).get("error", "")
        return 400, f"the body is not valid JSON ({why} at character {pos})", None
    if tuple(first.get("loc", ())) == ("body",):
        if first.get("type") == "missing":
            return 400, "the body is empty: send a JSON object", None
        return 400, f"the body must be a JSON object, got {_json_type(first.get('input'))}", None
    groups: dict[str, list[dict]] = {}
    for x in errs:
        groups.setdefault(_param(x.get("loc", ())[1:]), []).append(x)
    lines = [_line(param, xs) for param, xs in groups.items()]
    return 422, "; ".join(lines), next(iter(groups))


def _is_tag(part) -> bool:
    """A union branch's name in a pydantic location ('str', 'list[str]', ...), not a field."""
    return isinstance(part, str) and ("[" in part or part in ("str", "int", "float", "bool"))


def _param(loc: tuple) -> str:
    out = []
    for i, part in enumerate(loc):
        if _is_tag(part) or loc[i + 1:i + 2] == ("[key]",):  # a dict's key: name the dict
            break
        out.append(f"[{part}]" if isinstance(part, int) else str(part))
    return ".".join(out) or "body"


def _line(param: str, xs: list[dict]) -> str:
    x = xs[0]
    loc = tuple(x.get("loc", ()))[1:]
    if "[key]" in loc:  # a dict key of the wrong type (logit_bias: token ids)
        return f"{param}: key {loc[loc.index('[key]') - 1]!r}: {x.get('msg')}"
    if len(xs) > 1 or any(_is_tag(p) for p in loc):
        name = param.rsplit(".", 1)[-1]
        whole = [y for y in xs if len(y.get("loc", ())) == len(param.split(".")) + 2]
        got = f", got {_json_type(whole[0].get('input'))}" if whole else ""
        return f"{param}: expected {_FORMS.get(name, 'another type')}{got}"
    return f"{param}: {x.get('msg')}"


def _json_type(value) -> str:
    if isinstance(value, list):
        return f"an array of {len(value)}"
    names = {dict: "an object", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


class _Guard:
    """ASGI middleware for /v1/*: the API key and the body size, before any parsing. (Plain
    ASGI, not ``@app.middleware``: that wrapper gets in the way of streaming and of noticing
    client disconnects.)"""

    def __init__(self, app, limits: Limits):
        self.app, self.limits = app, limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        key, cap = self.limits.api_key, self.limits.max_request_bytes
        if key and headers.get("authorization", "") != f"Bearer {key}":
            return await self._reply(send, 401, P.error_body(
                "missing or wrong API key (send 'Authorization: Bearer <key>')",
                "authentication_error", code="invalid_api_key"))
        size = headers.get("content-length", "")
        if size.isdigit() and int(size) > cap:
            return await self._reply(send, 413, _too_big(cap))
        if scope["method"] == "POST" and not size.isdigit():  # chunked: count as it comes
            body, more = b"", True
            while more:
                msg = await receive()
                body += msg.get("body", b"")
                more = msg.get("more_body", False)
                if len(body) > cap:
                    return await self._reply(send, 413, _too_big(cap))
            receive = _replay(body, receive)
        if scope["method"] == "POST" and "json" not in headers.get("content-type", ""):
            scope = _as_json(scope)
        return await self.app(scope, receive, send)

    @staticmethod
    async def _reply(send, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})


def _as_json(scope: dict) -> dict:
    """Read a POST body as JSON whatever its Content-Type says (``curl -d`` sends a form type;
    OpenAI's routes take nothing but JSON)."""
    headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-type"]
    return {**scope, "headers": [*headers, (b"content-type", b"application/json")]}


def _too_big(cap: int) -> dict:
    return P.error_body(f"request body over {cap} bytes", code="request_too_large")


def _replay(body: bytes, receive):
    sent = False

    async def inner():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return inner


def _check_model(name: str, served: str) -> None:
    if name not in (served, "default"):
        raise APIError(404, f"model '{name}' is not served here; this server serves "
                            f"'{served}' (see /v1/models)", param="model",
                       code="model_not_found")


def _check_logit_bias(body, vocab: int) -> None:
    bad = [t for t in (body.logit_bias or {}) if not 0 <= t < vocab]
    if bad:
        raise APIError(400, f"logit_bias: token id {bad[0]} is not in the vocabulary (0 to "
                            f"{vocab - 1})", param="logit_bias")


def _n(body, limits: Limits) -> int:
    if body.n > limits.max_n:
        raise APIError(400, f"n: at most {limits.max_n} on this server, got {body.n}",
                       param="n")
    return body.n


def _max_tokens(body, limits: Limits, engine, prompt_len: int, field: str) -> int:
    asked = body.requested_max_tokens()
    if asked is not None and asked > limits.max_tokens:
        raise APIError(400, f"max_tokens: at most {limits.max_tokens} on this server, got "
                            f"{asked}", param="max_tokens")
    mt = limits.default_max_tokens if asked is None else asked
    room = engine.max_model_len - prompt_len
    if asked is None:  # fill the context at most
        mt = max(0, min(mt, room))
    try:
        engine.check(prompt_len, mt)
    except RequestTooLarge as e:
        raise APIError(400, f"{field}: {e}", param=field,
                       code="context_length_exceeded") from None
    return mt


def _encode(tokenizer, prompt) -> list[int]:
    from lmlab.infer.decode import encode_prompts

    try:
        return encode_prompts(tokenizer, [prompt])[0]
    except UserError as e:
        raise APIError(400, str(e).replace("prompts[0]: ", "")) from None


def _submit(engine, ids, params, top_logprobs, limits: Limits):
    try:
        return engine.submit(ids, params, top_logprobs)
    except QueueFull as e:
        raise APIError(429, f"server busy: {e}; retry after {limits.retry_after_s} s",
                       "rate_limit_error", code="queue_full",
                       headers={"Retry-After": str(limits.retry_after_s)}) from None
    except RequestTooLarge as e:
        raise APIError(400, str(e), code="context_length_exceeded") from None


# ----------------------------------------------------------------------------- responses


class _ChatFormat:
    kind = "chat.completion"

    def __init__(self, model: str, n: int):
        self.model, self.id = model, f"chatcmpl-{time.time_ns():x}"

    def chunk(self, index, text, lps, why, first):
        delta = {"role": "assistant", "content": text} if first else \
            ({"content": text} if text else {})
        c = {"index": index, "delta": delta, "logprobs": None, "finish_reason": why}
        if lps:
            c["logprobs"] = P.chat_logprobs(lps)
        return P.envelope("chat.completion.chunk", self.id, self.model, [c])

    def final(self, choices, use):
        out = []
        for i, (text, lps, why) in sorted(choices.items()):
            c = {"index": i, "message": {"role": "assistant", "content": text},
                 "logprobs": P.chat_logprobs(lps) if lps is not None else None,
                 "finish_reason": why}
            out.append(c)
        return P.envelope("chat.completion", self.id, self.model, out, usage=use)


class _CompletionFormat:
    def __init__(self, model: str):
        self.model, self.id = model, f"cmpl-{time.time_ns():x}"
        self.offsets: dict[int, int] = {}

    def chunk(self, index, text, lps, why, first):
        off = self.offsets.get(index, 0)
        self.offsets[index] = off + len(text)
        c = {"index": index, "text": text, "finish_reason": why,
             "logprobs": P.completion_logprobs(lps, off) if lps else None}
        return P.envelope("text_completion", self.id, self.model, [c])

    def final(self, choices, use):
        out = [{"index": i, "text": text, "finish_reason": why,
                "logprobs": P.completion_logprobs(lps) if lps is not None else None}
               for i, (text, lps, why) in sorted(choices.items())]
        return P.envelope("text_completion", self.id, self.model, out, usage=use)


async def _merged(reqs, offsets):
    """(global choice index, Delta) from several engine requests, as they come."""
    if len(reqs) == 1:
        async for d in reqs[0].events():
            yield offsets[0] + d.index, d
        return
    q: asyncio.Queue = asyncio.Queue()

    async def pump(req, off):
        async for d in req.events():
            await q.put((off + d.index, d))
        await q.put(None)

    tasks = [asyncio.create_task(pump(r, o)) for r, o in zip(reqs, offsets)]
    try:
        left = len(tasks)
        while left:
            item = await q.get()
            if item is None:
                left -= 1
            else:
                yield item
    finally:
        for t in tasks:
            t.cancel()


def _usage(reqs) -> dict:
    return P.usage(sum(r.prompt_tokens for r in reqs), sum(r.completion_tokens for r in reqs))


async def _collect(engine, reqs, offsets, fmt, http: HTTPRequest) -> dict:
    """Wait for every choice; a client that goes away meanwhile cancels its sequences."""
    choices: dict[int, list] = {}
    watch = asyncio.create_task(_watch_disconnect(http))
    finished = False
    try:
        async for i, d in _merged(reqs, offsets):
            text, lps, why = choices.setdefault(i, ["", None, None])
            if d.logprobs:
                lps = (lps or []) + d.logprobs
            choices[i] = [text + d.text, lps, d.finish_reason or why]
            if watch.done():  # nobody will read the answer
                break
        else:
            finished = True
    finally:
        watch.cancel()
        if not finished:
            for r in reqs:
                engine.abort(r)
    return fmt.final({i: tuple(v) for i, v in choices.items()}, _usage(reqs))


async def _watch_disconnect(http: HTTPRequest) -> None:
    """Returns when the client hangs up (the body is read: the next ASGI message is that)."""
    while (await http.receive())["type"] != "http.disconnect":
        pass


def _sse(engine, reqs, offsets, fmt, include_usage: bool, http) -> StreamingResponse:
    async def events():
        seen: set[int] = set()
        done = False
        try:
            async for i, d in _merged(reqs, offsets):
                first = i not in seen
                seen.add(i)
                if not (first or d.text or d.finish_reason or d.logprobs):
                    continue
                yield f"data: {json.dumps(fmt.chunk(i, d.text, d.logprobs, d.finish_reason, first))}\n\n"
            if include_usage:
                u = P.envelope(fmt.chunk(0, "", None, None, False)["object"], fmt.id,
                               fmt.model, [], usage=_usage(reqs))
                yield f"data: {json.dumps(u)}\n\n"
            yield "data: [DONE]\n\n"
            done = True
        finally:
            if not done:  # the client went away: free its sequences
                for r in reqs:
                    engine.abort(r)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
