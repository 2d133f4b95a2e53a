"""Bad requests to `lmlab serve` (in-process, tiny model): each gets a 4xx with OpenAI's error
body whose message (and ``param``) names the field; never a 500, never a traceback; the server
keeps serving (the last test)."""

import json

import pytest

from ..serve.conftest import make_app

MAX_BYTES = 16384  # max_request_bytes here: room for the long prompts, cheap to exceed
CHAT, COMP = "/v1/chat/completions", "/v1/completions"
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def client(tokenizer):
    from fastapi.testclient import TestClient

    app, _ = make_app(tokenizer, max_tokens=64, default_max_tokens=8, max_n=4,
                      max_request_bytes=MAX_BYTES)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def chat(**fields) -> bytes:
    return json.dumps({"model": "tiny:llama", "messages": MSG, **fields}).encode()


def comp(**fields) -> bytes:
    return json.dumps({"model": "tiny:llama", "prompt": "hi", **fields}).encode()


def without(body: bytes, key: str) -> bytes:
    d = json.loads(body)
    del d[key]
    return json.dumps(d).encode()


CASES = {
    # name: (route, body, status, param, words the message holds)
    "malformed JSON": (CHAT, b'{"model": "tiny:llama", "messages": [', 400, None,
                       ["not valid JSON", "character"]),
    "body a list": (CHAT, b"[1, 2]", 400, None, ["JSON object", "array"]),
    "body a string": (COMP, b'"hello"', 400, None, ["JSON object", "a string"]),
    "empty body": (CHAT, b"", 400, None, ["empty"]),
    "not UTF-8": (CHAT, chat(messages=[{"role": "user", "content": "caf"}]).replace(
        b"caf", b"caf\xe9"), 400, None, ["UTF-8", "0xe9"]),
    "no messages": (CHAT, without(chat(), "messages"), 422, "messages", ["messages", "required"]),
    "no prompt": (COMP, without(comp(), "prompt"), 422, "prompt", ["prompt", "required"]),
    "no model": (CHAT, without(chat(), "model"), 422, "model", ["model"]),
    "max_tokens a word": (CHAT, chat(max_tokens="ten"), 422, "max_tokens", ["integer"]),
    "temperature -1": (CHAT, chat(temperature=-1), 422, "temperature", ["greater than"]),
    "temperature NaN": (CHAT, chat().replace(b"}", b', "temperature": NaN}'), 422,
                        "temperature", ["finite"]),
    "top_p 2": (COMP, comp(top_p=2), 422, "top_p", ["less than"]),
    "n 0": (CHAT, chat(n=0), 422, "n", ["greater than"]),
    "n over the server's limit": (CHAT, chat(n=9), 400, "n", ["at most 4"]),
    "max_tokens over the server's": (COMP, comp(max_tokens=65), 400, "max_tokens", ["at most 64"]),
    "seed over 64 bits": (CHAT, chat(seed=2**70), 422, "seed", ["less than"]),
    "prompt over the context": (COMP, comp(prompt="word " * 2100), 400, "prompt",
                                ["2048 tokens", "prompt"]),
    "chat over the context": (CHAT, chat(messages=[{"role": "user", "content": "word " * 2100}]),
                              400, "messages", ["2048 tokens"]),
    "body over max_request_bytes": (COMP, comp(prompt="x" * MAX_BYTES), 413, None,
                                    [f"over {MAX_BYTES} bytes"]),
    "unknown model": (CHAT, chat(model="gpt-9"), 404, "model", ["gpt-9", "tiny:llama"]),
    "unknown role": (CHAT, chat(messages=[{"role": "wizard", "content": "hi"}]), 422,
                     "messages.[0].role", ["messages.[0].role", "'user'"]),
    "empty messages": (CHAT, chat(messages=[]), 422, "messages", ["at least 1"]),
    "a message not an object": (CHAT, chat(messages=["hi"]), 422, "messages.[0]",
                                ["messages.[0]"]),
    "content of unknown parts": (CHAT, chat(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": "x"}]}]), 422, "messages.[0].content",
        ["text parts"]),
    "too many stops": (CHAT, chat(stop=["a", "b", "c", "d", "e"]), 422, "stop",
                       ["at most 4", "an array of 5"]),
    "stop a number": (COMP, comp(stop=5), 422, "stop", ["a string or a list"]),
    "prompt of numbers": (COMP, comp(prompt=[1, 2]), 422, "prompt", ["a list of strings"]),
    "empty prompt list": (COMP, comp(prompt=[]), 400, "prompt", ["empty"]),
    "logit_bias key not a token id": (CHAT, chat(logit_bias={"abc": 1}), 422, "logit_bias",
                                      ["'abc'"]),
    "logit_bias id outside the vocab": (CHAT, chat(logit_bias={"99999999": 1}), 400,
                                        "logit_bias", ["99999999", "vocabulary"]),
    "logit_bias over 100": (CHAT, chat(logit_bias={"5": 500}), 422, "logit_bias.5",
                            ["less than"]),
    "top_logprobs 50": (CHAT, chat(logprobs=True, top_logprobs=50), 422, "top_logprobs",
                        ["20"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_request(client, name):
    route, body, status, param, words = CASES[name]
    r = client.post(route, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert "Traceback" not in r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["param"] == param and err["type"].endswith("_error")
    missing = [w for w in words if w not in err["message"]]
    assert not missing, f"{err['message']!r} lacks {missing}"


def test_oversize_body_sent_chunked(client):
    """No Content-Length to refuse by: the body is counted as it arrives."""
    parts = iter([comp(prompt="x" * 1000)[:-2], b"x" * MAX_BYTES, b'"}'])
    r = client.post(COMP, content=parts, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_a_form_content_type_is_read_as_json(client):
    """`curl -d` sends application/x-www-form-urlencoded: the JSON body is still read."""
    r = client.post(CHAT, content=chat(max_tokens=2),
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["role"] == "assistant"


def test_still_serving_after_every_bad_request(client):
    assert client.get("/health").json()["status"] == "ok"
    r = client.post(CHAT, content=chat(max_tokens=3, temperature=0))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["usage"]["completion_tokens"] >= 1
    r = client.post(COMP, content=comp(max_tokens=3, stream=True))
    assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]")
