"""Request bodies of the chat, arena and deploy routes: size-capped before parsing, validated by a
pydantic model, every problem named by its field; user errors become HTTP errors."""

from __future__ import annotations

import contextlib
from importlib import resources

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ValidationError

from lmlab.errors import UserError

MAX_BODY = 256 * 1024  # bytes; a chat history of this size is far past a small model's context


async def read(request: Request, model: type[BaseModel], limit: int = MAX_BODY) -> BaseModel:
    size = request.headers.get("content-length", "")
    if size.isdigit() and int(size) > limit:
        raise HTTPException(413, f"request body over {limit} bytes")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise HTTPException(413, f"request body over {limit} bytes")
    if not raw.strip():
        raise HTTPException(400, "the body is empty: send a JSON object")
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        raise HTTPException(422, problems(e)) from None


def problems(e: ValidationError) -> str:
    """pydantic's errors as ``field: message`` lines joined by '; '."""
    out = []
    for x in e.errors():
        if x.get("type") == "json_invalid":
            return f"the body is not valid JSON: {(x.get('ctx') or {}).get('error', '')}"
        where = ".".join(str(p) for p in x.get("loc", ())) or "body"
        out.append(f"{where}: {x.get('msg')}")
    return "; ".join(out)


@contextlib.contextmanager
def user_errors(status: int = 400):
    """A UserError raised inside becomes an HTTP error with its message."""
    try:
        yield
    except UserError as e:
        raise HTTPException(getattr(e, "http_status", status), str(e)) from None


def page(name: str) -> HTMLResponse:
    """One of the studio's static pages."""
    return HTMLResponse((resources.files("lmlab.studio") / "static" / name).read_text())
