"""The unpadded BERT forward (embed/unpadded.py) against transformers' own BertModel forward:
the same hidden states at every real token, the same gradients, and a padded batch giving
each text the embedding it has alone."""

import warnings

import torch

from lmlab.embed import unpadded
from lmlab.embed.model import load_encoder

from ..tolerance import forward_tol


def _batch(vocab: int, lengths: list[int], seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    t = max(lengths)
    ids = torch.randint(1000, vocab, (len(lengths), t), generator=g)
    mask = (torch.arange(t)[None] < torch.tensor(lengths)[:, None]).long()
    return ids.masked_fill(mask == 0, 0), mask


def test_hidden_states_equal_the_transformers_forward():
    """18 texts: three attention groups of 8, 8 and 2 texts by length (the last two of one
    length, attended without a mask); each group's outputs must land on its own tokens."""
    enc, tok = load_encoder("tiny:bert")
    enc.eval()
    assert enc.unpad
    ids, mask = _batch(len(tok), [3, 17, 1, 9, 17, 5, 12, 2, 8, 17, 4, 6, 1, 16, 3, 10, 7, 9])
    with torch.no_grad():
        ours = unpadded.forward(enc.backbone, ids, mask)  # (B, T, H)
        theirs = enc.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
    keep = mask.bool()
    scale = float(theirs.abs().max())
    assert (ours[keep] - theirs[keep]).abs().max() <= forward_tol(enc.backbone.config, 17) * scale
    assert torch.count_nonzero(ours[~keep]) == 0  # padding holds zeros, never read by pooling


def test_gradients_equal_the_transformers_forward():
    enc, tok = load_encoder("tiny:bert")
    enc.eval()  # dropout off, so both paths compute the same function
    ids, mask = _batch(len(tok), [4, 11, 2, 11, 5, 7, 1, 9, 3, 10, 6], seed=1)
    w = torch.randn(11, enc.dim, generator=torch.Generator().manual_seed(2))
    grads = []
    for unpad in (True, False):
        enc.unpad = unpad
        enc.zero_grad(set_to_none=True)
        (enc(ids, mask) * w).sum().backward()
        grads.append({n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    tol = 2 * forward_tol(enc.backbone.config, 11)
    for name, g in grads[1].items():
        assert (grads[0][name] - g).abs().max() <= tol * max(1.0, float(g.abs().max())), name


def test_padding_in_training_mode_changes_nothing_without_dropout():
    enc, tok = load_encoder("tiny:bert")
    for m in enc.modules():  # train mode (as in the loop) but deterministic
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    for layer in enc.backbone.encoder.layer:
        layer.attention.self.dropout.p = 0.0
    enc.train()
    ids, mask = _batch(len(tok), [6, 2, 13])
    together = enc(ids, mask)
    alone = torch.cat([enc(ids[i:i + 1, :n], mask[i:i + 1, :n]) for i, n in enumerate([6, 2, 13])])
    assert (together - alone).abs().max() <= forward_tol(enc.backbone.config, 13)


def test_dropout_still_applies_in_training():
    enc, tok = load_encoder("tiny:bert")
    enc.train()
    ids, mask = _batch(len(tok), [5, 8])
    assert not torch.equal(enc(ids, mask), enc(ids, mask))


def test_only_plain_bert_encoders_are_unpadded():
    from transformers import BertConfig, BertModel

    assert not unpadded.supports(BertModel(BertConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, is_decoder=True)))
    assert not unpadded.supports(torch.nn.Linear(2, 2))


def test_activation_checkpointing_gives_the_same_gradients():
    enc, tok = load_encoder("tiny:bert")
    enc.eval()
    ids, mask = _batch(len(tok), [7, 3], seed=3)
    grads = []
    for ckpt in (False, True):
        if ckpt:
            with warnings.catch_warnings():  # transformers 5 renames it; fsdp.py calls this one
                warnings.simplefilter("ignore", FutureWarning)
                enc.backbone.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs={"use_reentrant": False})
            assert unpadded._checkpointing(enc.backbone)
        enc.zero_grad(set_to_none=True)
        enc(ids, mask).sum().backward()
        grads.append(enc.backbone.encoder.layer[0].intermediate.dense.weight.grad.clone())
    assert torch.equal(grads[0], grads[1])
