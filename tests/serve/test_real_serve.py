"""The default model behind the server (slow tier): concurrent greedy chat replies equal our
decode loop run on each prompt alone."""

import asyncio

import httpx
import pytest

from .conftest import live_server

pytestmark = pytest.mark.slow

QUESTIONS = ["What is the capital of France?", "Write a haiku about the sea.",
             "What is 17 times 3?", "Why is the sky blue?"]


def test_real_model_concurrent_greedy_equals_alone():
    from lmlab.infer.decode import generate
    from lmlab.infer.sampling import SamplingParams
    from lmlab.models import load_model, load_tokenizer
    from lmlab.stages.serve import Config, build

    tok, model = load_tokenizer("smollm2-135m-instruct"), load_model("smollm2-135m-instruct")
    msgs = [[{"role": "user", "content": q}] for q in QUESTIONS]
    alone = [generate(model, tok, [m], SamplingParams(temperature=0, max_new_tokens=24),
                      batch_size=1)[0].text for m in msgs]
    app, _ = build(Config(), model=model, tokenizer=tok)
    with live_server(app) as url:
        async def together():
            async with httpx.AsyncClient(timeout=300) as ac:
                rs = await asyncio.gather(*[ac.post(f"{url}/v1/chat/completions", json={
                    "model": "smollm2-135m-instruct", "messages": m, "temperature": 0,
                    "max_tokens": 24}) for m in msgs])
            return [r.json()["choices"][0]["message"]["content"] for r in rs]

        assert asyncio.run(together()) == alone
    assert "Paris" in alone[0]
