"""Batched augmentation: deterministic under a seed, and each transform does what it says."""

import torch
import torch.nn.functional as F

from lmlab.vision.augment import augment, cutout, hflip, random_crop


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _images(n=6, c=2, h=5, w=7):
    return torch.arange(n * c * h * w, dtype=torch.float32).reshape(n, c, h, w) + 1


def test_same_seed_same_batch_other_seed_other_batch():
    x = _images()
    a = augment(x, _g(3), crop_pad=2, flip=True, cutout_size=2)
    b = augment(x, _g(3), crop_pad=2, flip=True, cutout_size=2)
    c = augment(x, _g(4), crop_pad=2, flip=True, cutout_size=2)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_random_crop_is_a_window_of_the_padded_image():
    x = _images()
    out = random_crop(x, 2, _g(1))
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):  # each output is one of the 5x5 windows of its padded image
        windows = [padded[i, :, dy:dy + 5, dx:dx + 7] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    assert torch.equal(random_crop(x, 0, _g(1)), x)


def test_flip_with_p_one_and_zero():
    x = _images()
    assert torch.equal(hflip(x, _g(), p=1.0), x.flip(3))
    assert torch.equal(hflip(x, _g(), p=0.0), x)


def test_cutout_zeroes_at_most_one_square_per_image():
    x = _images(n=20, c=1, h=8, w=8)
    out = cutout(x, 3, _g(2))
    zeros = (out == 0).flatten(1).sum(1)
    assert ((zeros >= 1) & (zeros <= 9)).all()  # a 3x3 square, clipped at the border
    assert (zeros == 9).any()
    kept = out != 0
    assert torch.equal(out[kept], x[kept])
