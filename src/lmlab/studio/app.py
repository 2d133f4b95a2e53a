"""The studio's FastAPI app: pages (runs, run, compare, launch), their JSON API, live metrics
over server-sent events, the job queue, and the arena/deploy routers of ``arena.py`` and
``deploy.py``.

Safety (docs/studio.md): with ``ctx.token`` set, every route wants ``Authorization: Bearer
<token>``, the cookie that ``?token=<token>`` sets once, or 401. Without a token the studio is
bound to loopback (``lmlab studio`` refuses otherwise) and answers only requests addressed to a
loopback name, so a web page elsewhere cannot reach it through DNS rebinding. A POST must be
JSON, which a cross-site form cannot send without a CORS preflight this app never grants. Run
names become paths only through ``paths.resolve_run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles

from lmlab.errors import UserError
from lmlab.studio import arena, deploy, launch, pages
from lmlab.studio.context import StudioContext
from lmlab.studio.runs import RunIndex, read_rows, resolve_name, run_details

STATIC = Path(__file__).parent / "static"
COOKIE = "lmlab_studio_token"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
POLL_S = 0.2  # how often an event stream looks at metrics.jsonl (delivery within ~0.2 s)


class NotFound(UserError):
    pass


def create_app(ctx: StudioContext) -> FastAPI:
    ctx.root = Path(ctx.root).resolve()
    if ctx.queue is None:
        from lmlab.studio.jobs import JobQueue

        ctx.queue = JobQueue(ctx.root)
    ctx.extra.setdefault("index", RunIndex(ctx.root))
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        ctx.extra["closing"] = True  # event streams end; the running job saves and stops
        await asyncio.to_thread(ctx.queue.close)

    app = FastAPI(title="lmlab studio", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.ctx = ctx
    _guard(app, ctx)

    @app.exception_handler(UserError)
    async def _user_error(request: Request, exc: UserError):
        code = 404 if isinstance(exc, NotFound) else 400
        return JSONResponse({"error": str(exc)}, status_code=code)

    app.include_router(_pages(ctx))
    app.include_router(_runs_api(ctx))
    app.include_router(_launch_api(ctx))
    app.include_router(arena.make_router(ctx))
    app.include_router(deploy.make_router(ctx))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    return app


# ----------------------------------------------------------------------------- access


def _guard(app: FastAPI, ctx: StudioContext) -> None:
    @app.middleware("http")
    async def guard(request: Request, call_next):
        if ctx.token:
            given = _token_of(request)
            if given is None or not hmac.compare_digest(given.encode(), ctx.token.encode()):
                return _refuse(request, 401, "a token is required: open the link `lmlab "
                                            "studio` printed, or send Authorization: Bearer")
            if request.query_params.get("token") and request.method == "GET" \
                    and not request.url.path.startswith("/api/"):
                query = urlencode([(k, v) for k, v in request.query_params.multi_items()
                                   if k != "token"])
                back = RedirectResponse(request.url.path + (f"?{query}" if query else ""), 303)
                back.set_cookie(COOKIE, ctx.token, httponly=True, samesite="strict")
                return back  # the token leaves the address bar (and the history)
        elif (request.url.hostname or "") not in LOOPBACK:
            return _refuse(request, 403, f"host {request.url.hostname!r} refused: without a "
                                         f"token the studio answers only on loopback")
        if request.method == "POST" and "application/json" not in \
                request.headers.get("content-type", ""):
            return _refuse(request, 415, "send JSON (Content-Type: application/json)")
        return await call_next(request)


def _token_of(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.query_params.get("token") or request.cookies.get(COOKIE)


def _refuse(request: Request, code: int, message: str):
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=code)
    return HTMLResponse(pages.message_page("lmlab studio", message), status_code=code)


# ----------------------------------------------------------------------------- pages


def _pages(ctx: StudioContext) -> APIRouter:
    r = APIRouter()

    @r.get("/", response_class=HTMLResponse)
    def runs_page():
        return pages.runs_page(ctx.root)

    @r.get("/launch", response_class=HTMLResponse)
    def launch_page():
        return pages.launch_page()

    @r.get("/compare", response_class=HTMLResponse)
    def compare_page(runs: str = ""):
        for name in _names(runs):
            _run_path(ctx, name)
        return pages.compare_page()

    @r.get("/report/{name:path}")
    def report(name: str):
        path = _run_path(ctx, name) / "report" / "report.html"
        if not path.is_file():
            raise NotFound(f"{name} has no report yet (make one from its page)")
        return FileResponse(path, media_type="text/html")

    @r.get("/run/{name:path}", response_class=HTMLResponse)
    def run_page(name: str):
        resolve_name(ctx.root, name)  # a launched job's folder may not exist yet: it waits
        return pages.run_page(name)

    return r


def _names(text: str) -> list[str]:
    return [n for n in (p.strip() for p in text.split(",")) if n]


def _run_path(ctx: StudioContext, name: str) -> Path:
    path = resolve_name(ctx.root, name)
    if not path.is_dir():
        raise NotFound(f"run: no run {name!r} under {ctx.root}")
    return path


# ----------------------------------------------------------------------------- runs API


def _rows(ctx: StudioContext) -> list[dict]:
    return ctx.extra["index"].scan(ctx.queue.by_run())


def _row(ctx: StudioContext, name: str) -> dict:
    path = _run_path(ctx, name)
    return ctx.extra["index"].row(name, path, ctx.queue.by_run().get(path))


def _runs_api(ctx: StudioContext) -> APIRouter:
    r = APIRouter(prefix="/api")

    @r.get("/runs")
    def runs():
        return {"root": str(ctx.root), "rows": _rows(ctx)}

    @r.get("/runs/{name:path}/metrics")
    def metrics(name: str, after: int = 0):
        return read_rows(_run_path(ctx, name) / "metrics.jsonl", max(0, after))

    @r.get("/runs/{name:path}/details")
    def details(name: str):
        path = _run_path(ctx, name)
        return {"row": _row(ctx, name), **run_details(path), "path": str(path)}

    @r.get("/runs/{name:path}/events")
    async def events(name: str, request: Request, after: int = 0):
        path = _run_path(ctx, name) / "metrics.jsonl"
        return StreamingResponse(_stream(ctx, name, path, max(0, after), request),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @r.post("/runs/{name:path}/resume")
    def resume_run(name: str):
        return {"job": ctx.queue.status(_resume_saved(ctx, name))}

    @r.post("/runs/{name:path}/report")
    def make_report(name: str):
        path = _run_path(ctx, name)
        job = ctx.queue.submit("report", {"runs": str(path), "output_dir": str(path / "report")})
        return {"job": ctx.queue.status(job)}

    @r.get("/compare")
    def compare(runs: str):
        names = _names(runs)
        if not names:
            raise UserError("runs: give run names, runs=a,b")
        items = [{"name": n, **run_details(_run_path(ctx, n))} for n in names]
        return {"runs": items, "config_diff": config_diff([i["config"] for i in items]),
                "summary": summary_table([i["summary"] or {} for i in items])}

    return r


async def _stream(ctx: StudioContext, name: str, path: Path, offset: int, request: Request):
    """Server-sent events: ``rows`` (new metrics rows, ``id`` = the byte offset after them),
    ``reset`` (the file was rewound: start over), ``status`` (the run's row, every 2 s)."""
    yield "retry: 1000\n\n"
    last_status = 0.0
    while not ctx.extra.get("closing"):
        out = read_rows(path, offset)
        if out["reset"]:
            yield "event: reset\ndata: {}\n\n"
        if out["rows"] or out["problems"] or out["reset"]:
            offset = out["offset"]
            yield f"event: rows\nid: {offset}\ndata: {json.dumps(out)}\n\n"
        if time.monotonic() - last_status > 2.0:
            last_status = time.monotonic()
            try:
                yield f"event: status\ndata: {json.dumps(_row(ctx, name))}\n\n"
            except UserError:
                break
        if await request.is_disconnected():
            break
        await asyncio.sleep(POLL_S)


def _resume_saved(ctx: StudioContext, name: str) -> str:
    """Queue a run again from its saved config with ``resume=auto``."""
    path = _run_path(ctx, name)
    saved = run_details(path)["config"]
    stage = saved.get("stage")
    if not saved or not isinstance(stage, str):
        raise UserError(f"{name}: its config.yaml is missing or names no stage; it cannot be "
                        f"resumed from the studio")
    defaults = {f["key"]: f["default"] for f in launch.form(stage)["fields"]}
    overrides = {k: launch.as_text(v) for k, v in saved.items()
                 if k in defaults and launch.as_text(v) != defaults[k]}
    overrides.update(output_dir=str(path), resume="auto")
    overrides.pop("overwrite", None)
    return ctx.queue.submit(stage, overrides)


def config_diff(configs: list[dict]) -> list[dict]:
    """One row per key any config has: its values across the runs, ``same`` when all equal."""
    keys = list(dict.fromkeys(k for c in configs for k in c))
    out = []
    for k in keys:
        values = [c.get(k) for c in configs]
        out.append({"key": k, "values": values,
                    "same": all(json.dumps(v, sort_keys=True, default=str)
                                == json.dumps(values[0], sort_keys=True, default=str)
                                for v in values)})
    return out


def _numbers(d, prefix: str = "", out: dict | None = None) -> dict:
    out = {} if out is None else out
    if isinstance(d, dict):
        for k, v in d.items():
            _numbers(v, f"{prefix}{k}.", out)
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        out[prefix[:-1]] = d
    return out


def summary_table(summaries: list[dict]) -> list[dict]:
    """The numbers of each ``summary.json`` (nested keys dotted), one row per key."""
    flat = [_numbers(s) for s in summaries]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    return [{"key": k, "values": [f.get(k) for f in flat]} for k in keys]


# ----------------------------------------------------------------------------- launch API


def _launch_api(ctx: StudioContext) -> APIRouter:
    from lmlab.stages import load_stage
    from lmlab.studio.jobs import launchable

    r = APIRouter(prefix="/api")

    @r.get("/stages")
    def stages():
        return {"stages": [{"name": s, "help": load_stage(s).HELP, "recipes": launch.recipes(s)}
                           for s in launchable()]}

    @r.get("/form/{stage}")
    def form(stage: str, recipe: str = ""):
        return launch.form(stage, recipe or None)

    @r.post("/check/{stage}")
    async def check(stage: str, request: Request):
        return launch.check(stage, await _body(request), ctx.root)

    @r.post("/launch/{stage}")
    async def start(stage: str, request: Request):
        result = launch.check(stage, await _body(request), ctx.root)
        if not result["ok"]:
            return JSONResponse(result, status_code=422)
        try:
            job = ctx.queue.submit(stage, result["overrides"])
        except UserError as e:
            result["ok"], result["general"] = False, [str(e)]
            return JSONResponse(result, status_code=422)
        return {**result, "job": ctx.queue.status(job)}

    @r.get("/jobs")
    def jobs():
        return {"jobs": ctx.queue.status()}

    @r.get("/jobs/{job_id}")
    def job(job_id: str):
        return ctx.queue.status(job_id)

    @r.post("/jobs/{job_id}/stop")
    def stop(job_id: str):
        return ctx.queue.stop(job_id)

    @r.post("/jobs/{job_id}/resume")
    def resume(job_id: str):
        return ctx.queue.status(ctx.queue.resume(job_id))

    return r


async def _body(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise UserError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise UserError("the request body must be a JSON object of key: value")
    values = body.get("values", body)
    if not isinstance(values, dict):
        raise UserError("values: expected an object of key: value")
    return values
