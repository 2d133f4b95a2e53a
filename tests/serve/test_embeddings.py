"""/v1/embeddings with the real `openai` client against a live uvicorn: the vectors equal
the encoder's own, base64 and float encodings agree, and bad requests are OpenAI-shaped."""

import httpx
import pytest
import torch

from ..tolerance import forward_tol
from .conftest import live_server, make_app

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def url(tokenizer):
    app, _ = make_app(tokenizer, embed_model="tiny:bert", max_batch_size=2)
    with live_server(app) as u:
        yield u, app.state.embedder


def test_openai_client_gets_the_encoders_vectors(url):
    from lmlab.embed.model import encode

    base, embedder = url
    c = openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0, timeout=60)
    texts = ["hello world", "a second and rather longer input sentence", "x"]
    res = c.embeddings.create(model="tiny:bert", input=texts)  # the client asks for base64
    assert [d.index for d in res.data] == [0, 1, 2] and res.model == "tiny:bert"
    got = torch.tensor([d.embedding for d in res.data])
    want = encode(embedder.encoder, embedder.tokenizer, texts)
    assert torch.equal(got, want)  # float32 bytes travel exactly
    floats = c.embeddings.create(model="tiny:bert", input="x", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(want[2].tolist(), abs=1e-7)
    n_tok = sum(len(embedder.tokenizer(t)["input_ids"]) for t in texts)
    assert res.usage.prompt_tokens == n_tok == res.usage.total_tokens
    assert "tiny:bert" in [m.id for m in c.models.list().data]


@pytest.mark.parametrize("body,status,frag", [
    ({"model": "nope", "input": "x"}, 404, "is not served here"),
    ({"model": "tiny:bert", "input": []}, 400, "non-empty list"),
    ({"model": "tiny:bert", "input": [[1, 2, 3]]}, 400, "token arrays"),
    ({"model": "tiny:bert", "input": ""}, 400, "empty strings"),
    ({"model": "tiny:bert", "input": "x", "dimensions": 7}, 400, "this encoder gives 32"),
    ({"model": "tiny:bert", "input": "word " * 600}, 400, "more than the 512"),
])
def test_bad_embedding_requests(url, body, status, frag):
    base, _ = url
    r = httpx.post(f"{base}/v1/embeddings", json=body, timeout=60)
    assert r.status_code == status, r.text
    assert frag in r.json()["error"]["message"]


def test_vectors_come_back_in_input_order(url):
    """The embedder batches longest first; each returned vector is its own input's (each text
    encoded alone), at its own index, across several batches."""
    from lmlab.embed.model import encode

    base, embedder = url
    c = openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0, timeout=60)
    texts = ["b " * n + "end" for n in (1, 9, 3, 14, 0, 6, 11, 2, 5)]  # lengths out of order
    size, embedder.batch_size = embedder.batch_size, 2
    try:
        res = c.embeddings.create(model="tiny:bert", input=texts)
    finally:
        embedder.batch_size = size
    assert [d.index for d in res.data] == list(range(len(texts)))
    got = torch.tensor([d.embedding for d in res.data])
    alone = torch.cat([encode(embedder.encoder, embedder.tokenizer, [t]) for t in texts])
    assert (got - alone).abs().max() <= forward_tol(embedder.encoder.backbone.config, 16)
