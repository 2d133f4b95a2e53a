"""Prefix reuse (infer.prefix): a prompt that opens like the one before copies those tokens'
keys/values instead of prefilling them; the cache, logits and tokens equal a full prefill's up
to fp32 rounding; plain and speculative decoding both use it with packed weights."""

import pytest
import torch

from lmlab.infer import prefix as prefix_mod
from lmlab.infer.decode import decode, encode_prompts, generate
from lmlab.infer.fastpath import LlamaStep
from lmlab.infer.packed import can_pack, packed_linears
from lmlab.infer.prefix import LastPromptKV
from lmlab.infer.sampling import SamplingParams
from lmlab.infer.speculative import generate_speculative
from tests.tolerance import forward_tol

from .test_speculative import draft_like

pytestmark = pytest.mark.skipif(not can_pack(torch.zeros(2, 2)),
                                reason="this torch build has no oneDNN")

SYSTEM = "You are a careful assistant. Answer in one short sentence, please."
QUESTIONS = ["What is the capital of France?", "Name a prime number.", "Why is the sky blue?"]


def test_match_takes_the_common_opening_never_the_whole_prompt():
    c = LastPromptKV(min_tokens=3)
    assert c.match([1, 2, 3, 4]) == 0  # nothing kept yet
    c.tokens = [1, 2, 3, 4, 5]
    assert c.match([1, 2, 3, 4, 9]) == 4
    assert c.match([1, 2, 3, 4, 5]) == 4  # the last token always goes through the model
    assert c.match([1, 2, 3, 4, 5, 6]) == 5
    assert c.match([1, 2, 7, 4, 5, 6]) == 0  # 2 < min_tokens
    assert c.match([9]) == 0


@pytest.mark.parametrize("rest", [9, 3])  # 3: a suffix small enough for the native step
def test_prefill_with_a_reused_prefix_equals_a_full_prefill(model, rest):
    torch.manual_seed(0)
    V = model.config.vocab_size
    a = torch.randint(0, V, (20,)).tolist()
    b = a[:12] + torch.randint(0, V, (rest,)).tolist()
    lin = packed_linears(model)
    cache = LastPromptKV()
    with torch.inference_mode():
        cache.prefill(LlamaStep(model, None, 1, 32, lin=lin), a)
        step = LlamaStep(model, None, 1, 32, lin=lin)
        got = cache.prefill(step, b)
        full = LlamaStep(model, None, 1, 32, lin=lin)
        want = full.step(torch.tensor([b]), torch.arange(len(b))[None], len(b), None,
                         last_only=True)
    assert cache.reused == 12 and cache.prompts == 2 and cache.tokens == b
    rel = forward_tol(model.config, len(b))  # of the largest magnitude compared
    torch.testing.assert_close(got, want, rtol=0, atol=rel * float(want.abs().max()))
    for x, y in zip(step.k + step.v, full.k + full.v):
        torch.testing.assert_close(x[:, :, :len(b)], y[:, :, :len(b)], rtol=0,
                                   atol=rel * float(y[:, :, :len(b)].abs().max()))


def _chats():
    return [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}]
            for q in QUESTIONS]


def _count(monkeypatch):
    """Every LastPromptKV made from here on, to read its counters."""
    made = []
    real = prefix_mod.LastPromptKV.__init__

    def init(self, *a, **k):
        real(self, *a, **k)
        made.append(self)
    monkeypatch.setattr(prefix_mod.LastPromptKV, "__init__", init)
    return made


def test_generate_reuses_the_shared_opening_and_writes_the_same_tokens(model, tokenizer,
                                                                       monkeypatch):
    p = SamplingParams(temperature=0, max_new_tokens=10, ignore_eos=True)
    hf = [c.token_ids for c in generate(model, tokenizer, _chats(), p, batch_size=1)]
    made = _count(monkeypatch)
    got = generate(model, tokenizer, _chats(), p, batch_size=1, pack=True)
    assert [c.token_ids for c in got] == hf
    assert len(made) == 1 and made[0].prompts == 3
    assert made[0].reused >= 2 * 20  # the system turn, twice
    off = generate(model, tokenizer, _chats(), p, batch_size=1, pack=True, reuse_prefix=False)
    assert [c.token_ids for c in off] == hf and len(made) == 1
    generate(model, tokenizer, _chats(), p, batch_size=2, pack=True)  # batches: not used
    assert len(made) == 1


def test_speculative_reuses_prefixes_for_target_and_draft(model, tokenizer, monkeypatch):
    p = SamplingParams(temperature=0, max_new_tokens=12, ignore_eos=True)
    plain = [c.token_ids for c in generate(model, tokenizer, _chats(), p, batch_size=1)]
    made = _count(monkeypatch)
    res = generate_speculative(model, tokenizer, _chats(), p, draft=draft_like(model, 0.05),
                               num_draft_tokens=3, pack=True)
    assert [c.token_ids for c in res.completions] == plain
    assert len(made) == 2  # the target's and the draft's
    assert all(c.prompts == 3 and c.reused >= 2 * 20 for c in made)
    assert res.stats.accepted > 0


def test_decode_takes_a_prefix_cache_for_one_unpadded_row_only(model, tokenizer):
    p = SamplingParams(temperature=0, max_new_tokens=6, ignore_eos=True)
    ids = [tokenizer(SYSTEM + " " + q)["input_ids"] for q in QUESTIONS[:2]]
    cache = LastPromptKV()
    outs = [decode(model, torch.tensor([i]), None, p, pack=True, prefix=cache).tokens[0]
            for i in ids]
    assert cache.prompts == 2 and cache.reused > 0
    assert outs == [decode(model, torch.tensor([i]), None, p).tokens[0] for i in ids]


def test_prompts_run_in_reuse_order_and_come_back_in_the_given_order(model, tokenizer,
                                                                    monkeypatch):
    assert prefix_mod.reuse_order([[3, 1], [1, 2, 3], [1, 2], [3]]) == [2, 1, 3, 0]
    # two templates interleaved, in the given order and by length: each prompt shares only the
    # chat header with the one before; in reuse order the ones of a template run together
    qs = ["Translate to French: hi", "Count the letters in: a",
          "Translate to French: good evening, my dear friends", "Count the letters in: strawberry"]
    chats = [[{"role": "user", "content": q}] for q in qs]
    p = SamplingParams(temperature=0, max_new_tokens=6, ignore_eos=True)
    hf = [c.token_ids for c in generate(model, tokenizer, chats, p, batch_size=1)]
    made = _count(monkeypatch)
    got = generate(model, tokenizer, chats, p, batch_size=1, pack=True)
    assert [c.prompt for c in got] == chats and [c.token_ids for c in got] == hf
    ids = encode_prompts(tokenizer, chats)

    def common(a, b):
        n = 0
        while n < min(len(a), len(b)) - 1 and a[n] == b[n]:
            n += 1
        return n
    given = sum(common(ids[i - 1], ids[i]) for i in range(1, 4))
    order = prefix_mod.reuse_order(ids)
    best = sum(common(ids[a], ids[b]) for a, b in zip(order, order[1:]))
    by_len = sorted(range(4), key=lambda i: len(ids[i]))
    assert best > given and best > sum(common(ids[a], ids[b]) for a, b in zip(by_len, by_len[1:]))
    assert made[0].reused == best  # what generate reused: the reuse order's sharing
    spec = generate_speculative(model, tokenizer, chats, p, draft=draft_like(model, 0.05),
                                num_draft_tokens=2, pack=True)
    assert [c.prompt for c in spec.completions] == chats
    assert [c.token_ids for c in spec.completions] == hf
    assert made[1].reused == best
