"""The towers: the text tower reads EOS (padding after it changes nothing), the ViT's scratch
attention is bidirectional, and a saved CLIP loads back equal."""

import torch

from lmlab.clip.model import ClipShape, TextTower, build_clip, load_clip, save_clip
from lmlab.clip.text import PAD, encode_batch
from lmlab.scratch.attention import Attention


def test_text_tower_ignores_padding_after_eos():
    torch.manual_seed(0)
    tower = TextTower(8, 1, 2).eval()
    ids, eos = encode_batch(["a red star"], 32)
    padded = torch.cat([ids, torch.full((1, 5), PAD)], dim=1)
    assert torch.equal(tower(ids, eos), tower(padded, eos))


def test_scratch_attention_bidirectional_for_the_vit():
    torch.manual_seed(0)
    x = torch.randn(1, 5, 8)
    later = x.clone()
    later[0, 4] += 1.0  # change the last token only
    causal, full = Attention(8, 2), Attention(8, 2, causal=False)
    full.load_state_dict(causal.state_dict())
    assert torch.equal(causal(x)[0, 0], causal(later)[0, 0])  # the first token cannot see it
    assert not torch.allclose(full(x)[0, 0], full(later)[0, 0])  # the ViT's can


def test_save_and_load_give_the_same_embeddings(tmp_path):
    torch.manual_seed(0)
    shape = ClipShape(image_encoder="vit", image_size=8, patch=4, vit_dim=8, vit_depth=1,
                      text_dim=8, text_depth=1, heads=2, embed_dim=4)
    model = build_clip(shape).eval()
    save_clip(model, shape, tmp_path / "final", {"mean": [0.5] * 3})
    again, meta = load_clip(tmp_path)
    x = torch.randn(2, 3, 8, 8)
    ids, eos = encode_batch(["a", "bc"], 8)
    assert torch.equal(model.encode_image(x), again.encode_image(x))
    assert torch.equal(model.encode_text(ids, eos), again.encode_text(ids, eos))
    assert meta["mean"] == [0.5] * 3
