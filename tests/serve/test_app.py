"""The HTTP surface against a live uvicorn on loopback, with a tiny model: the real `openai`
client, streaming, n > 1, stop, logprobs, errors, backpressure, auth, cancellation, load."""

import asyncio
import json
import socket
import time

import httpx
import pytest

from .conftest import live_server, make_app

openai = pytest.importorskip("openai")

MSG = [{"role": "user", "content": "What is 2 + 3?"}]


def client(url, key="none"):
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


def metric(url, name):
    text = httpx.get(f"{url}/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def test_health_models_and_page(server):
    url, _ = server
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    assert [m.id for m in client(url).models.list().data] == ["tiny:llama"]
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and "/v1/chat/completions" in page.text


def test_chat_stream_equals_non_stream(server):
    url, _ = server
    c = client(url)
    full = c.chat.completions.create(model="tiny:llama", messages=MSG, temperature=0,
                                     max_tokens=12)
    ch = full.choices[0]
    assert ch.message.role == "assistant" and ch.finish_reason in ("stop", "length")
    assert full.usage.completion_tokens <= 12 and full.usage.prompt_tokens > 5
    pieces, reasons, usage = [], [], None
    for chunk in c.chat.completions.create(model="tiny:llama", messages=MSG, temperature=0,
                                           max_tokens=12, stream=True,
                                           stream_options={"include_usage": True}):
        if chunk.usage:
            usage = chunk.usage
        for x in chunk.choices:
            pieces.append(x.delta.content or "")
            reasons.append(x.finish_reason)
    assert len(pieces) > 2 and "".join(pieces) == ch.message.content
    assert reasons[-1] == ch.finish_reason and usage.completion_tokens == \
        full.usage.completion_tokens


def test_completions_stop_n_seed_logprobs(server):
    url, _ = server
    c = client(url)
    free = c.completions.create(model="tiny:llama", prompt="Once upon a time", temperature=0,
                                max_tokens=12)
    text = free.choices[0].text
    stop = text[4:7]
    cut = c.completions.create(model="tiny:llama", prompt="Once upon a time", temperature=0,
                               max_tokens=12, stop=[stop])
    assert cut.choices[0].finish_reason == "stop" and stop not in cut.choices[0].text
    assert text.startswith(cut.choices[0].text)
    a = c.completions.create(model="tiny:llama", prompt="Hi", n=3, seed=5, max_tokens=8)
    b = c.completions.create(model="tiny:llama", prompt="Hi", n=3, seed=5, max_tokens=8)
    assert [x.index for x in a.choices] == [0, 1, 2]
    assert [x.text for x in a.choices] == [x.text for x in b.choices]
    assert len({x.text for x in a.choices}) > 1
    lp = c.chat.completions.create(model="tiny:llama", messages=MSG, max_tokens=5,
                                   temperature=0, logprobs=True, top_logprobs=2)
    items = lp.choices[0].logprobs.content
    assert len(items) == lp.usage.completion_tokens and all(x.logprob <= 0 for x in items)
    assert all(len(x.top_logprobs) == 2 and x.top_logprobs[0].logprob >= x.logprob
               for x in items)
    legacy = c.completions.create(model="tiny:llama", prompt="Hi", max_tokens=6, temperature=0,
                                  logprobs=2, extra_body={"ignore_eos": True})
    lp = legacy.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == 6 and len(lp.top_logprobs[0]) <= 2
    assert "".join(lp.tokens) == legacy.choices[0].text and lp.text_offset[0] == 0


def test_concurrent_greedy_equals_sequential(server):
    url, engine = server
    prompts = [f"Count to {i}:" for i in range(8)]

    def one(p):
        r = httpx.post(f"{url}/v1/completions", json={"model": "tiny:llama", "prompt": p,
                                                      "max_tokens": 10 + len(p) % 5,
                                                      "temperature": 0}, timeout=60)
        return r.json()["choices"][0]["text"]

    sequential = [one(p) for p in prompts]

    async def together():
        async with httpx.AsyncClient(timeout=60) as ac:
            rs = await asyncio.gather(*[ac.post(f"{url}/v1/completions", json={
                "model": "tiny:llama", "prompt": p, "max_tokens": 10 + len(p) % 5,
                "temperature": 0}) for p in prompts])
        return [r.json()["choices"][0]["text"] for r in rs]

    assert asyncio.run(together()) == sequential


@pytest.mark.parametrize("body,status,frag", [
    (b"{not json", 400, "not valid JSON"),
    (json.dumps({"model": "tiny:llama", "messages": MSG, "temperature": "hot"}), 422,
     "temperature"),
    (json.dumps({"model": "tiny:llama", "messages": "hello"}), 422, "messages"),
    (json.dumps({"model": "gpt-9", "messages": MSG}), 404, "not served"),
    (json.dumps({"model": "tiny:llama", "messages": MSG, "max_tokens": 65}), 400, "at most 64"),
    (json.dumps({"model": "tiny:llama", "messages": MSG, "n": 99}), 400, "n: at most"),
    (json.dumps({"model": "tiny:llama", "messages": [{"role": "user", "content": "x " * 3000}]}),
     400, "limit of"),
])
def test_errors_are_openai_shaped(server, body, status, frag):
    url, _ = server
    r = httpx.post(f"{url}/v1/chat/completions", content=body,
                   headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert frag in err["message"] and err["type"]


def test_oversize_body_and_unknown_route(server):
    url, _ = server
    big = json.dumps({"model": "tiny:llama", "prompt": "x" * (2 << 20)})
    r = httpx.post(f"{url}/v1/completions", content=big,
                   headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    r = httpx.get(f"{url}/v1/nothing")
    assert r.status_code == 404 and "error" in r.json()
    with pytest.raises(openai.NotFoundError):
        client(url).chat.completions.create(model="nope", messages=MSG)


def test_api_key(tokenizer):
    app, _ = make_app(tokenizer, api_key="s3cret")
    with live_server(app) as url:
        with pytest.raises(openai.AuthenticationError):
            client(url, "wrong").models.list()
        r = httpx.post(f"{url}/v1/chat/completions", json={"model": "tiny:llama",
                                                          "messages": MSG})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        out = client(url, "s3cret").chat.completions.create(model="tiny:llama", messages=MSG,
                                                             max_tokens=3)
        assert out.choices[0].message.content is not None
        assert httpx.get(f"{url}/health").status_code == 200  # probes need no key


def test_backpressure_429_with_retry_after(tokenizer):
    app, engine = make_app(tokenizer, max_batch_size=1, max_waiting=2)
    execute = engine.runner.execute

    def slow_execute(batch):  # each step takes >= 20 ms: 120 tokens hold the one slot >= 2.4 s,
        time.sleep(0.02)      # so the burst meets a full queue however fast this CPU decodes
        return execute(batch)

    engine.runner.execute = slow_execute
    with live_server(app) as url:
        async def burst():
            async with httpx.AsyncClient(timeout=60) as ac:
                return await asyncio.gather(*[ac.post(f"{url}/v1/completions", json={
                    "model": "tiny:llama", "prompt": "Hello", "max_tokens": 120,
                    "temperature": 0, "ignore_eos": True}) for _ in range(12)])

        rs = asyncio.run(burst())
        codes = [r.status_code for r in rs]
        busy = [r for r in rs if r.status_code == 429]
        assert codes.count(200) >= 2 and busy, codes  # the 2 waiting places (+ 1 running)
        assert set(codes) == {200, 429}
        assert busy[0].headers["retry-after"] == "1"
        assert busy[0].json()["error"]["type"] == "rate_limit_error"
        assert len(engine.sched.waiting) == 0  # everything admitted was served


def test_client_disconnect_cancels_the_sequence(server):
    url, engine = server
    before = metric(url, 'lmlab_requests_total{status="abort"}')
    with httpx.stream("POST", f"{url}/v1/completions", json={
            "model": "tiny:llama", "prompt": "Tell me a story", "max_tokens": 64,
            "temperature": 0.8, "stream": True}, timeout=60) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i >= 2:
                break  # leave after the first events: the connection closes
    deadline = time.monotonic() + 10
    while metric(url, 'lmlab_requests_total{status="abort"}') == before:
        assert time.monotonic() < deadline, "the sequence was not cancelled"
        time.sleep(0.05)
    assert not engine.sched.running and engine.sched.free_blocks == \
        engine.sched.cfg.num_blocks


def test_non_streaming_client_that_leaves_is_cancelled(server):
    url, engine = server
    before = metric(url, 'lmlab_requests_total{status="abort"}')
    body = json.dumps({"model": "tiny:llama", "prompt": "Tell me a story", "max_tokens": 64,
                       "temperature": 0.8}).encode()
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        deadline = time.monotonic() + 10
        while not engine.sched.running:  # wait until it decodes, then hang up
            assert time.monotonic() < deadline
            time.sleep(0.005)
    deadline = time.monotonic() + 10
    while metric(url, 'lmlab_requests_total{status="abort"}') == before:
        assert time.monotonic() < deadline, "the sequence was not cancelled"
        time.sleep(0.05)
    assert engine.sched.free_blocks == engine.sched.cfg.num_blocks


def test_load_64_streaming_clients(server):
    """64 concurrent streaming clients on loopback: all complete, none lost, within 60 s."""
    url, _ = server

    async def one(ac, i):
        text, done = "", False
        async with ac.stream("POST", f"{url}/v1/chat/completions", json={
                "model": "tiny:llama", "messages": [{"role": "user", "content": f"n{i}"}],
                "max_tokens": 8, "stream": True, "seed": i}) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    for c in json.loads(line[6:])["choices"]:
                        text += c["delta"].get("content") or ""
        return done

    async def run():
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=100)) as ac:
            return await asyncio.wait_for(asyncio.gather(*[one(ac, i) for i in range(64)]), 60)

    t0 = time.monotonic()
    done = asyncio.run(run())
    assert all(done) and len(done) == 64
    text = httpx.get(f"{url}/metrics").text
    assert "lmlab_time_to_first_token_seconds_count" in text and time.monotonic() - t0 < 60
    assert metric(url, "lmlab_running_sequences") == 0
    assert metric(url, "lmlab_prefix_cache_hit_tokens") > 0  # the chat template's head
