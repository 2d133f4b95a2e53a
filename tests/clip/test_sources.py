"""The rendered sources: shapes (always), emoji and icons (skipped without their font /
package), and the caption stream's resume."""

import importlib.util
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from lmlab.clip import shapes

HAVE_EMOJI = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf").is_file()
HAVE_ICONS = importlib.util.find_spec("qtawesome") is not None


def test_shapes_are_drawn_as_captioned_and_reproducibly():
    assert len(shapes.classes()) == len(shapes.COLOURS) * len(shapes.SHAPES) == 48
    a = shapes.draw("red circle", random.Random(3), 32)
    b = shapes.draw("red circle", random.Random(3), 32)
    assert np.array_equal(np.asarray(a[0]), np.asarray(b[0])) and a[1] == b[1]
    assert a[0].size == (32, 32) and "red circle" in a[1]
    px = np.asarray(a[0]).reshape(-1, 3).astype(int)
    reddest = px[np.argmax(px[:, 0] - px[:, 1])]
    assert reddest[0] > 150 and reddest[1] < 100  # a red shape is there


def test_every_shape_looks_different():
    imgs = {}
    for s in shapes.SHAPES:  # same colour, size and place: only the outline differs
        rng = random.Random(0)
        imgs[s] = np.asarray(shapes.draw(f"blue {s}", rng, 32)[0]).astype(int)
    for s in shapes.SHAPES:
        for t in shapes.SHAPES:
            if s < t:
                assert np.abs(imgs[s] - imgs[t]).sum() > 0, (s, t)


@pytest.mark.skipif(not HAVE_EMOJI, reason="needs the Debian fonts-noto-color-emoji font")
def test_emoji_render_with_their_unicode_names():
    from lmlab.clip import emoji

    names = emoji.classes()
    assert len(names) > 1000 and "grinning face" in names
    img, caption = emoji.draw("grinning face", random.Random(0), 24)
    assert img.size == (24, 24) and "grinning face" in caption
    assert np.asarray(img).std() > 10  # something was drawn, in colour
    px = np.asarray(img).reshape(-1, 3).astype(int)
    assert (np.abs(px[:, 0] - px[:, 2]) > 60).any()


@pytest.mark.skipif(not HAVE_ICONS, reason="needs the qtawesome package (its icon fonts)")
def test_icons_render_with_their_charmap_names():
    from lmlab.clip import icons

    pairs = icons.font_pairs(icons.fonts_folder())
    assert len(pairs) >= 1 and all(t.suffix == ".ttf" for t, _ in pairs)
    names = icons.classes()
    assert len(names) > 1000 and not any("-" in n for n in names[:200])
    name = next(n for n in names if n.startswith("arrow"))
    img, caption = icons.draw(name, random.Random(0), 24)
    assert img.size == (24, 24) and name in caption and np.asarray(img).std() > 10


def test_caption_stream_resumes_where_it_left_off():
    from lmlab.clip.data import CaptionStream
    from lmlab.clip.text import encode_batch
    from lmlab.vision.train import ImageStream

    x = torch.randn(10, 3, 4, 4)
    ids, eos = encode_batch([f"caption {'x' * i}" for i in range(10)], 32)

    def stream():
        return CaptionStream(ImageStream(x, torch.arange(10), 4, seed=1), ids, eos)

    a = stream()
    a.next()
    state = a.state_dict()
    want = [a.next() for _ in range(3)]  # crosses an epoch
    b = stream()
    b.load_state_dict(state)
    for w in want:
        g = b.next()
        assert torch.equal(g["x"], w["x"]) and torch.equal(g["ids"], w["ids"])
        assert g["ids"].shape[1] == int(g["eos"].max()) + 1
        rows = [int(((x - g["x"][i]) == 0).flatten(1).all(1).nonzero()) for i in range(4)]
        assert torch.equal(g["eos"], eos[rows])  # each image keeps its own caption
