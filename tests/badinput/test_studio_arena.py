"""Bad requests to the studio's chat and arena routes (tiny in-process models): each gets a 4xx
whose message names the field or the value; never a 500; nothing is written to the preference
file; the app keeps answering (the last test)."""

import json

import pytest

from ..studio.fakes import make_app, make_ctx

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def app_ctx(tmp_path_factory, tokenizer):
    from fastapi.testclient import TestClient

    root = tmp_path_factory.mktemp("runs")
    (root / "empty-run").mkdir()  # a folder with no model in it
    ctx = make_ctx(root, tokenizer)
    with TestClient(make_app(ctx), raise_server_exceptions=False) as c:
        yield c, ctx
    ctx.extra["models"].close()


def chat(**kw) -> dict:
    return {"model": "tiny:llama", "messages": MSG, "max_tokens": 4, **kw}


def pair(**kw) -> dict:
    return {"model_a": "tiny:llama", "model_b": "tiny:llama4", "prompt": "hi",
            "max_tokens": 4, **kw}


CASES = {  # name: (route, body, status, words the message must hold)
    "unknown run": ("/api/chat", chat(model="no-such-run"), 404, ["no-such-run"]),
    "unknown tiny preset": ("/api/chat", chat(model="tiny:huge"), 400, ["huge"]),
    "folder without a model": ("/api/chat", chat(model="empty-run"), 400, ["empty-run"]),
    "path as a model": ("/api/chat", chat(model="../../etc"), 400, ["../../etc"]),
    "empty message": ("/api/chat", chat(messages=[{"role": "user", "content": "  "}]), 400,
                      ["messages", "non-empty"]),
    "ends with the assistant": ("/api/chat", chat(messages=[
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]), 400,
        ["user turn"]),
    "no messages": ("/api/chat", chat(messages=[]), 422, ["messages"]),
    "unknown role": ("/api/chat", chat(messages=[{"role": "bot", "content": "x"}]), 422,
                     ["role"]),
    "temperature out of range": ("/api/chat", chat(temperature=5), 422, ["temperature"]),
    "max_tokens too large": ("/api/chat", chat(max_tokens=100000), 422, ["max_tokens"]),
    "unknown field": ("/api/chat", chat(top_k=3), 422, ["top_k"]),
    "prompt over the context": ("/api/chat", chat(messages=[
        {"role": "user", "content": "word " * 3000}]), 400, ["messages"]),
    "empty arena prompt": ("/api/arena/pair", pair(prompt=" "), 400, ["prompt", "empty"]),
    "arena model unknown": ("/api/arena/pair", pair(model_b="nope"), 404, ["nope"]),
    "arena without a prompt": ("/api/arena/pair", {"model_a": "base", "model_b": "base"}, 422,
                               ["prompt"]),
    "vote on an unknown pair": ("/api/arena/vote", {"pair": "abc123", "winner": "A"}, 404,
                                ["abc123"]),
    "vote for C": ("/api/arena/vote", {"pair": "abc123", "winner": "C"}, 422, ["winner"]),
}


@pytest.mark.parametrize("name", CASES)
def test_bad_request_is_refused_with_a_message(app_ctx, name):
    client, ctx = app_ctx
    route, body, status, words = CASES[name]
    r = client.post(route, json=body)
    assert r.status_code == status, r.text
    message = r.json()["detail"]
    assert all(w in message for w in words), message
    assert not (ctx.root / "arena-preferences.jsonl").exists()


@pytest.mark.parametrize("raw, status, words", [
    (b"", 400, ["empty"]),
    (b"{not json", 422, ["not valid JSON"]),
    (b"[1, 2]", 422, ["body"]),
    (json.dumps(chat(messages=[{"role": "user", "content": "x" * 300_000}])).encode(), 413,
     ["over"]),
])
def test_bad_body_is_refused(app_ctx, raw, status, words):
    client, _ = app_ctx
    r = client.post("/api/chat", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert all(w in r.json()["detail"] for w in words), r.text


def test_identical_replies_cannot_be_voted_apart(app_ctx):
    client, ctx = app_ctx
    p = client.post("/api/arena/pair", json=pair(model_b="tiny:llama", temperature=0)).json()
    assert p["identical"] and p["A"] == p["B"]
    r = client.post("/api/arena/vote", json={"pair": p["pair"], "winner": "A"})
    assert r.status_code == 400 and "identical" in r.json()["detail"]
    assert not (ctx.root / "arena-preferences.jsonl").exists()


def test_the_app_still_answers(app_ctx):
    client, _ = app_ctx
    r = client.post("/api/chat", json=chat(temperature=0))
    assert r.status_code == 200 and r.json()["text"]
