"""Sentence encoder: pooling masks, truncation, and the saved folder loading in
sentence-transformers and transformers with the same embeddings."""

import pytest
import torch

from lmlab.embed.model import encode, load_encoder, pool, save_encoder, tokenize

from ..tolerance import approx_fp32


def test_pooling_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, -4.0], [100.0, 100.0]],
                           [[5.0, 6.0], [-50.0, 70.0], [-60.0, 80.0]]])  # (B=2, T=3, H=2)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0, -1.0], [5.0, 6.0]]
    assert pool(hidden, mask, "max").tolist() == [[3.0, 2.0], [5.0, 6.0]]
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 2.0], [5.0, 6.0]]
    with pytest.raises(ValueError, match="unknown pooling"):
        pool(hidden, mask, "sum")


@pytest.mark.parametrize("mode", ["mean", "max", "cls"])
def test_padding_does_not_change_an_embedding(mode):
    enc, tok = load_encoder("tiny:bert", pooling=mode)
    texts = ["short", "a much longer sentence that pads the short one in its batch"]
    together = encode(enc, tok, texts, batch_size=2)
    alone = torch.cat([encode(enc, tok, [t]) for t in texts])
    assert together.flatten().tolist() == approx_fp32(alone.flatten().tolist(), terms=64)


def test_tokenize_truncates_keeping_the_closing_token():
    _, tok = load_encoder("tiny:bert")
    text = "word " * 40
    with pytest.warns(UserWarning, match="1 of 2 texts are longer than 16 tokens"):
        ids, cut = tokenize(tok, [text, "hi"], 16)
    assert cut == 1 and len(ids[0]) == 16 and ids[0][-1] == tok.sep_token_id
    assert ids[0][0] == tok.cls_token_id and ids[1] == tok("hi")["input_ids"]


@pytest.mark.parametrize("mode", ["mean", "cls"])
def test_saved_folder_loads_in_sentence_transformers_and_transformers(tmp_path, mode):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    enc, tok = load_encoder("tiny:bert", pooling=mode)
    save_encoder(enc, tok, tmp_path / "m", max_len=64)
    texts = ["hello world", "a second, longer sentence", "x"]
    ours = encode(enc, tok, texts)
    st = SentenceTransformer(str(tmp_path / "m"), device="cpu")
    assert st.max_seq_length == 64
    theirs = st.encode(texts, convert_to_tensor=True)
    assert ours.flatten().tolist() == approx_fp32(theirs.flatten().tolist(), terms=64)
    hf = AutoModel.from_pretrained(tmp_path / "m")
    assert torch.equal(hf.embeddings.word_embeddings.weight,
                       enc.backbone.embeddings.word_embeddings.weight)
    again, _ = load_encoder(str(tmp_path / "m"))  # our loader reads the pooling back
    assert again.pooling == mode and again.normalize
    assert torch.equal(encode(again, tok, texts), ours)


def test_packaged_minilm_reads_its_pooling():
    enc, _ = load_encoder("minilm")
    assert (enc.pooling, enc.normalize, enc.dim) == ("mean", True, 384)
