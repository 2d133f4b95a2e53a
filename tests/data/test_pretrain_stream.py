"""The pretraining token stream, documents, the char tokenizer, packing without cross-document
attention, and bits per byte by hand."""

import math

import pytest
import torch

from lmlab.data import stream as S
from lmlab.data.char_tokenizer import build_char_tokenizer
from lmlab.data.corpora import limit_chars
from lmlab.data.documents import split_documents


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer(["abcdefgh \nxyzé"])


def test_char_tokenizer_round_trip_and_reload(tok, tmp_path):
    from transformers import AutoTokenizer

    text = "bad cafe\né"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text) and tok.decode(ids) == text
    assert tok.eos_token_id == 0 and tok.pad_token_id == 0
    assert tok("Q", add_special_tokens=False)["input_ids"] == [tok.unk_token_id]
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(text, add_special_tokens=False)["input_ids"] == ids
    assert again.apply_chat_template([{"role": "user", "content": "a"}], tokenize=False,
                                     add_generation_prompt=True) == "user: a<|endoftext|>\nassistant: "


def test_char_table_encoding_equals_the_tokenizer(tok):
    from lmlab.data.char_tokenizer import encode_chars

    for text in ["bad cafe\né", "Q\U0001F600 unknown", "", "ab<|endoftext|>cd"]:
        assert encode_chars(tok, text) == tok(text, add_special_tokens=False)["input_ids"]


def test_split_and_limit_documents_by_hand():
    docs = ["aaaa\nbbbb\n", "cccccccccc"]  # 20 characters; 0.3 -> cut at 14, inside doc 2
    train, val = split_documents(docs, 0.3)
    assert train == ["aaaa\nbbbb\n", "cccc"] and val == ["cccccc"]
    train, val = split_documents(docs, 0.8)  # cut at 4, moved to the line end
    assert train == ["aaaa\n"] and val == ["bbbb\n", "cccccccccc"]
    assert limit_chars(docs, 12) == ["aaaa\nbbbb\n", "cc"]
    assert limit_chars(docs, None) == docs and limit_chars(docs, 0) == []


def test_join_segments_and_document_mask_by_hand():
    t = S.join_documents([[5, 6], [7]], eos_id=0)
    assert t.tolist() == [0, 5, 6, 0, 7]
    ids = torch.tensor([[6, 0, 7, 8]])  # a window that starts inside a document
    seg, pos = S.segments(ids, 0)
    assert seg.tolist() == [[0, 1, 1, 1]] and pos.tolist() == [[0, 0, 1, 2]]
    m = S.document_mask(seg)[0, 0].int().tolist()
    assert m == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 1, 1, 1]]
    m = S.document_mask(seg, causal=False)[0, 0].int().tolist()
    assert m == [[1, 0, 0, 0], [0, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1]]


def _stream(**kw):
    tokens = torch.arange(100)
    return S.TokenStream(tokens, 8, 3, lambda w, seed: {"w": w, "seed": seed}, seed=1, **kw)


def test_stream_windows_resume_and_ranks():
    a = _stream()
    batches = [a.next() for _ in range(3)]
    w = batches[0]["w"]
    assert w.shape == (3, 9) and torch.equal(w[:, 1:] - w[:, :-1], torch.ones(3, 8).long())
    b = _stream()
    b.load_state_dict(a.state_dict() | {"pos": 2})
    again = b.next()
    assert torch.equal(again["w"], batches[2]["w"]) and again["seed"] == batches[2]["seed"]
    # two ranks of batch 3 see the windows one rank of batch 6 sees
    one = S.TokenStream(torch.arange(100), 8, 6, lambda w, s: w, seed=1).next()
    r0 = S.TokenStream(torch.arange(100), 8, 3, lambda w, s: w, seed=1, rank=0, world=2).next()
    r1 = S.TokenStream(torch.arange(100), 8, 3, lambda w, s: w, seed=1, rank=1, world=2).next()
    assert torch.equal(torch.cat([r0, r1]), one)


def test_eval_windows_score_every_token_once():
    t = torch.arange(10)
    ws = S.eval_windows(t, 4)
    assert [w.tolist() for w in ws] == [[0, 1, 2, 3, 4], [4, 5, 6, 7, 8], [8, 9]]
    assert sum(w.numel() - 1 for w in ws) == 9


class _Uniform(torch.nn.Module):
    """Logits 0 everywhere: every token costs ln V."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab, self.w = vocab, torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, **kw):
        from types import SimpleNamespace

        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.vocab))


def test_bits_per_byte_by_hand(tok):
    from lmlab.eval.pretrain_eval import scored_bytes, val_metrics
    from lmlab.losses.paradigms import build_paradigm

    docs = ["ab\n", "é"]
    tokens = S.join_documents([tok(d, add_special_tokens=False)["input_ids"] for d in docs],
                              tok.eos_token_id)  # <eos> a b \n <eos> é
    # scored: a b \n <eos> é -> 1 + 1 + 1 + 1 (separator) + 2 (é in UTF-8) = 6 bytes
    assert scored_bytes(tok, tokens) == 6
    p = build_paradigm("clm", tok, 3)
    m = val_metrics(_Uniform(len(tok)), p.make_batch, p.objective, tokens, 3, batch_size=2,
                    n_bytes=6)
    V = len(tok)
    assert m["tokens"] == 5 and m["loss"] == pytest.approx(math.log(V), abs=1e-5)
    assert m["bits_per_byte"] == pytest.approx(5 * math.log(V) / (math.log(2) * 6), abs=1e-6)
    assert m["perplexity"] == pytest.approx(V, rel=1e-5)


def test_scored_bytes_do_not_depend_on_the_tokenizer(tok):
    from lmlab.eval.pretrain_eval import scored_bytes
    from lmlab.models import load_tokenizer

    bpe = load_tokenizer("tiny:llama")  # the SmolLM2 BPE
    docs = ["bad cafe\nabc", "xyz é"]
    counts = []
    for t in (tok, bpe):
        ids = [t(d, add_special_tokens=False)["input_ids"] for d in docs]
        counts.append(scored_bytes(t, S.join_documents(ids, t.eos_token_id)))
    assert counts[0] == counts[1] == len(b"bad cafe\nabc") + 1 + len("xyz é".encode())


@pytest.mark.parametrize("position", ["rope", "learned", "none", "alibi"])
def test_packed_documents_do_not_attend_across(tok, position):
    """With isolate_docs, the logits of a document in a packed window equal the logits of the
    document alone, whatever comes before it; without, they change (the test can fail)."""
    from lmlab.losses.paradigms import build_paradigm
    from lmlab.models.scratch_presets import build_decoder, size

    model = build_decoder(size("tiny"), position, tok).eval()
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]
    d2 = [0, *enc("bad egg")]
    packed = {k: S.join_documents([enc(x), enc("bad egg")], 0) for k, x in
              (("a", "fact"), ("b", "zyx gh"))}
    iso = build_paradigm("clm", tok, 32, isolate_docs=True, positions_only=position == "alibi")
    plain = build_paradigm("clm", tok, 32)

    def logits(p, t):
        b = p.make_batch(torch.cat([t, torch.tensor([0])])[None], 0)
        inputs = {k: v for k, v in b.items() if k != "labels"}
        with torch.no_grad():
            return model(**inputs, use_cache=False).logits[0]

    alone = logits(plain, torch.tensor(d2))
    n = len(d2)
    for t in packed.values():
        assert torch.allclose(logits(iso, t)[-n:], alone, atol=1e-5)
    a, b = (logits(plain, t)[-n:] for t in packed.values())
    assert not torch.allclose(a, b, atol=1e-3)
