"""Batched augmentation on (B, C, H, W) tensors: random crop with padding, horizontal flip,
cutout. The random numbers come from the ``generator`` given (on the CPU), so the same seed
gives the same batch on any device; ``draw`` and ``apply`` split the drawing from the pixels
(the stream draws an epoch's at once). No Python loop over images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def draw(n: int, h: int, w: int, generator: torch.Generator, *, crop_pad: int = 0,
         flip: bool = False, cutout_size: int = 0, flip_p: float = 0.5) -> dict:
    """The random numbers of ``n`` images' augmentations, (n,) tensors: crop offsets in
    [0, 2*pad], flip flags, cutout centres anywhere in the image. Drawn apart from the pixels so
    a stream can draw a whole epoch's at once and any batching (micro-batches, ranks) applies
    the same ones to the same image."""
    p: dict = {}
    if crop_pad > 0:
        p["dy"] = torch.randint(0, 2 * crop_pad + 1, (n,), generator=generator)
        p["dx"] = torch.randint(0, 2 * crop_pad + 1, (n,), generator=generator)
    if flip:
        p["flip"] = torch.rand(n, generator=generator) < flip_p
    if cutout_size > 0:
        p["cy"] = torch.randint(0, h, (n,), generator=generator)
        p["cx"] = torch.randint(0, w, (n,), generator=generator)
    return p


def apply(x: torch.Tensor, params: dict, *, crop_pad: int = 0, cutout_size: int = 0):
    """Crop, flip, cutout with the drawn ``params`` (rows matching x's images)."""
    params = {k: v.to(x.device) for k, v in params.items()}
    if "dy" in params:
        x = crop_at(x, crop_pad, params["dy"], params["dx"])
    if "flip" in params:
        x = torch.where(params["flip"][:, None, None, None], x.flip(3), x)
    if "cy" in params:
        x = cutout_at(x, cutout_size, params["cy"], params["cx"])
    return x


def crop_at(x: torch.Tensor, pad: int, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Zero-pad by ``pad`` on every side, then crop image i back to (H, W) at offset
    (dy[i], dx[i]) of the padded image (the CIFAR recipe: pad 4 for 32x32)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))  # (B, C, H+2p, W+2p)
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = dx[:, None] + torch.arange(w, device=x.device)  # (B, W)
    bi = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def cutout_at(x: torch.Tensor, size: int, cy: torch.Tensor, cx: torch.Tensor) -> torch.Tensor:
    """Zero a ``size`` x ``size`` square centred at (cy[i], cx[i]); it may hang over the edge
    (DeVries & Taylor 2017). Zero is the dataset mean after normalising."""
    _, _, h, w = x.shape
    top, left = cy - size // 2, cx - size // 2
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    in_y = (ys >= top[:, None]) & (ys < (top + size)[:, None])  # (B, H)
    in_x = (xs >= left[:, None]) & (xs < (left + size)[:, None])  # (B, W)
    return x.masked_fill((in_y[:, :, None] & in_x[:, None, :])[:, None], 0.0)


def random_crop(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """A random crop of each image after zero-padding by ``pad``."""
    if pad <= 0:
        return x
    return apply(x, draw(len(x), *x.shape[2:], generator, crop_pad=pad), crop_pad=pad)


def hflip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``."""
    return apply(x, draw(len(x), *x.shape[2:], generator, flip=True, flip_p=p))


def cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero one ``size`` x ``size`` square per image at a random centre."""
    if size <= 0:
        return x
    return apply(x, draw(len(x), *x.shape[2:], generator, cutout_size=size), cutout_size=size)


def augment(x: torch.Tensor, generator: torch.Generator, *, crop_pad: int = 0,
            flip: bool = False, cutout_size: int = 0) -> torch.Tensor:
    """The training transforms in their usual order: crop, flip, cutout."""
    p = draw(len(x), *x.shape[2:], generator, crop_pad=crop_pad, flip=flip,
             cutout_size=cutout_size)
    return apply(x, p, crop_pad=crop_pad, cutout_size=cutout_size)
