"""CLIP's symmetric InfoNCE by hand on a 2x2 batch, and the learned temperature."""

import math

import torch

from lmlab.clip.model import MAX_SCALE, ClipShape, build_clip
from lmlab.clip.text import encode_batch
from lmlab.losses.contrastive import clip_loss
from tests.tolerance import approx_fp32


def test_symmetric_info_nce_on_2x2_by_hand():
    # images i1 = (1, 0), i2 = (0, 1); texts t1 = (1, 0), t2 = (0.6, 0.8); scale 2
    # logits = 2 * [[1, 0.6], [0, 0.8]] = [[2, 1.2], [0, 1.6]]
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    texts = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    got = clip_loss(images, texts, 2.0)
    # image -> text: rows; text -> image: columns; -log softmax of 2 logits = log(1 + e^-(d))
    i2t = [math.log1p(math.exp(-(2 - 1.2))), math.log1p(math.exp(-(1.6 - 0)))]
    t2i = [math.log1p(math.exp(-(2 - 0))), math.log1p(math.exp(-(1.6 - 1.2)))]
    want = [(i2t[0] + t2i[0]) / 2, (i2t[1] + t2i[1]) / 2]  # 0.249015, 0.348458
    assert got.tolist() == approx_fp32(want, terms=8, scale=2)
    assert abs(want[0] - 0.249015) < 1e-6 and abs(want[1] - 0.348458) < 1e-6
    # not symmetric in its arguments' roles unless the logits are: swapping gives the same
    # pair losses (each direction becomes the other)
    assert clip_loss(texts, images, 2.0).tolist() == approx_fp32(want, terms=8, scale=2)


def _tiny():
    torch.manual_seed(0)
    return build_clip(ClipShape(widths=[4, 8], text_dim=8, text_depth=1, heads=2, embed_dim=8,
                                image_size=8))


def test_the_temperature_is_learned():
    model = _tiny()
    x = torch.randn(4, 3, 8, 8)
    ids, eos = encode_batch(["a red circle", "a blue star", "a green square", "a cross"], 32)
    start = model.logit_scale.item()
    assert math.isclose(model.scale().item(), 1 / 0.07, rel_tol=1e-5)
    opt = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.0)
    for _ in range(3):
        img, txt, scale = model(x, ids, eos)
        clip_loss(img, txt, scale).mean().backward()
        assert model.logit_scale.grad is not None and model.logit_scale.grad.abs() > 0
        opt.step()
        opt.zero_grad()
    assert model.logit_scale.item() != start


def test_the_scale_is_capped_at_100_like_clip():
    model = _tiny()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(1000.0))
    img, txt, scale = model(torch.randn(2, 3, 8, 8), *encode_batch(["a", "b"], 8))
    assert math.isclose(scale.item(), MAX_SCALE, rel_tol=1e-5)
    clip_loss(img, txt, scale).sum().backward()
    assert model.logit_scale.grad.item() == 0.0  # past the cap it no longer moves
