"""Chat and arena routes over tiny models: replies come from the serving engine, a pair shows
two anonymous replies, a vote becomes a preference row that lmlab's preference reader (the one
`lmlab dpo` and `lmlab reward` use) accepts."""

import json

import pytest

from lmlab.studio.preferences import tie_file

from .fakes import studio_client, studio_ctx

MSG = [{"role": "user", "content": "Hello there"}]
GREEDY = {"temperature": 0, "max_tokens": 8}


@pytest.fixture()
def ctx(tmp_path, tokenizer):
    with studio_ctx(tmp_path, tokenizer) as c:
        yield c


@pytest.fixture()
def client(ctx):
    with studio_client(ctx) as c:
        yield c


def test_chat_replies_with_text_from_the_engine(client):
    r = client.post("/api/chat", json={"model": "tiny:llama", "messages": MSG, **GREEDY})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"].strip() and body["finish_reason"] in ("length", "stop")
    again = client.post("/api/chat", json={"model": "tiny:llama", "messages": MSG, **GREEDY})
    assert again.json()["text"] == body["text"]  # greedy: the same reply


def test_chat_streams_the_same_text_as_events(client):
    whole = client.post("/api/chat", json={"model": "tiny:llama", "messages": MSG, **GREEDY})
    with client.stream("POST", "/api/chat", json={"model": "tiny:llama", "messages": MSG,
                                                  "stream": True, **GREEDY}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        data = [line[5:].strip() for line in r.iter_lines() if line.startswith("data:")]
    assert data[-1] == "[DONE]"
    events = [json.loads(d) for d in data[:-1]]
    assert "".join(e.get("text", "") for e in events) == whole.json()["text"]
    assert events[-1]["finish_reason"] in ("length", "stop")


def test_the_cache_keeps_at_most_two_models_and_shuts_down_the_oldest():
    from lmlab.studio.models import ModelCache

    class Engine:
        def __init__(self, ref):
            self.ref, self.state = ref, "new"

        def start(self):
            self.state = "running"

        def shutdown(self):
            self.state = "stopped"

    made = []

    def load(ref):
        made.append(Engine(ref))
        return made[-1], None

    cache = ModelCache(load)
    cache.get("a", "ref-a"), cache.get("b", "ref-b"), cache.get("a", "ref-a")  # a: most recent
    cache.get("c", "ref-c")
    assert cache.loaded() == ["a", "c"]
    assert [(e.ref, e.state) for e in made] == [("ref-a", "running"), ("ref-b", "stopped"),
                                                ("ref-c", "running")]
    cache.close()
    assert {e.state for e in made} == {"stopped"} and cache.loaded() == []


def test_a_run_folder_chats_through_the_default_loader(ctx, client, tokenizer):
    from lmlab.studio.models import ModelCache

    from ..tiny import varied

    run = ctx.root / "sft-demo"
    varied().save_pretrained(run / "final")
    tokenizer.save_pretrained(run / "final")
    ctx.extra["models"] = ModelCache()  # lmlab serve's builder, as the studio runs it
    assert client.get("/api/models").json()["models"] == ["base", "sft-demo"]
    r = client.post("/api/chat", json={"model": "sft-demo", "messages": MSG, **GREEDY})
    assert r.status_code == 200, r.text
    assert r.json()["text"].strip()
    ctx.extra["models"].close()


def pair(client, **kw):
    body = {"model_a": "tiny:llama", "model_b": "tiny:llama4", "prompt": "Say something",
            "temperature": 0, "max_tokens": 6, **kw}
    r = client.post("/api/arena/pair", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_pair_gives_two_anonymous_replies_in_random_order(client):
    seen = []
    for _ in range(3):  # Random(0) shows the first model first, then second
        p = pair(client)
        assert p["A"].strip() and p["B"].strip() and p["A"] != p["B"]
        assert "model_a" not in p and "models" not in p  # nothing names the models
        seen.append(p["A"])
    assert len(set(seen)) == 2  # greedy replies, so two texts: each model was shown as A


def test_vote_writes_a_preference_row_that_dpo_reads(client, ctx):
    from lmlab.data import load_rows
    from lmlab.stages.dpo import Config, read_rows

    p = pair(client, system="Be brief.")
    r = client.post("/api/arena/vote", json={"pair": p["pair"], "winner": "B"})
    assert r.status_code == 200, r.text
    shown = r.json()["models"]
    assert sorted(shown.values()) == ["tiny:llama", "tiny:llama4"]
    q = pair(client)
    assert client.post("/api/arena/vote", json={"pair": q["pair"], "winner": "A"}).is_success
    path = ctx.root / "arena-preferences.jsonl"
    raw = [json.loads(line) for line in path.read_text().splitlines()]
    assert raw[0]["chosen"] == p["B"] and raw[0]["rejected"] == p["A"]
    assert raw[0]["meta"]["chosen_model"] == shown["B"]
    assert raw[0]["meta"]["rejected_model"] == shown["A"]
    assert raw[1]["prompt"] == "Say something" and raw[1]["chosen"] == q["A"]
    rows = read_rows(Config(data=str(path)))  # what `lmlab dpo data=<file>` reads
    assert rows == [{"prompt": [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Say something"}],
                     "chosen": p["B"], "rejected": p["A"]},
                    {"prompt": "Say something", "chosen": q["A"], "rejected": q["B"]}]
    assert load_rows(str(path), "preference") == rows  # and `lmlab reward`


def test_a_tie_goes_to_its_own_file_and_a_pair_takes_one_vote(client, ctx):
    p = pair(client)
    assert client.post("/api/arena/vote", json={"pair": p["pair"], "winner": "tie"}).is_success
    assert not (ctx.root / "arena-preferences.jsonl").exists()
    tie = json.loads(tie_file(ctx.root / "arena-preferences.jsonl").read_text())
    assert tie["replies"] == [p["A"], p["B"]]
    again = client.post("/api/arena/vote", json={"pair": p["pair"], "winner": "A"})
    assert again.status_code == 404


def test_the_preference_file_is_configurable(tmp_path, tokenizer):
    from fastapi.testclient import TestClient

    from .fakes import make_app, make_ctx

    ctx = make_ctx(tmp_path, tokenizer, preferences_file=tmp_path / "prefs" / "mine.jsonl")
    with TestClient(make_app(ctx)) as c:
        p = pair(c)
        assert c.post("/api/arena/vote", json={"pair": p["pair"], "winner": "A"}).is_success
        assert c.get("/api/models").json()["preferences_file"].endswith("mine.jsonl")
    assert (tmp_path / "prefs" / "mine.jsonl").is_file()
    ctx.extra["models"].close()


def test_pages_and_their_files_are_served(client):
    for url in ("/chat", "/arena"):
        r = client.get(url)
        assert r.status_code == 200 and "<html" in r.text
        for src in ("/ui/chat.css", "/ui/sse.js", "/ui/talk.js", "/ui/talk.css"):
            assert src in r.text
    assert "readEvents" in client.get("/ui/sse.js").text
    assert client.get("/ui/../app.py").status_code == 404
    assert client.get("/ui/context.py").status_code == 404


def test_serve_and_studio_pages_share_one_stylesheet_and_stream_reader(client):
    from lmlab.serve.app import chat_page, static_text

    served = chat_page()  # lmlab serve's page: one document, the shared files inlined
    for name in ("chat.css", "sse.js"):
        assert f"/* {name} */" not in served
        assert static_text(name) in served
        assert client.get(f"/ui/{name}").text == static_text(name)
