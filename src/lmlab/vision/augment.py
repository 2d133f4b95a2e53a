"""Batched augmentation on (B, C, H, W) tensors: random crop with padding, horizontal flip,
cutout. Each draws its random numbers from the ``generator`` it is given (on the CPU), so the
same seed gives the same batch on any device and resume needs no RNG state (the stream seeds a
generator per batch from (seed, epoch, position)). No Python loop over images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``pad`` on every side, then crop each image back to (H, W) at a random
    offset in [0, 2*pad] (the CIFAR recipe; pad=4 for 32x32, 2-4 for 28x28)."""
    if pad <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))  # (B, C, H+2p, W+2p)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = dx[:, None] + torch.arange(w, device=x.device)  # (B, W)
    bi = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous(memory_format=_format(x))


def hflip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``."""
    flip = (torch.rand(x.shape[0], generator=generator) < p).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero one ``size`` x ``size`` square per image, centred anywhere in the image (it may hang
    over the edge, as in DeVries & Taylor 2017). Zero is the dataset mean after normalising."""
    if size <= 0:
        return x
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b,), generator=generator).to(x.device)
    cx = torch.randint(0, w, (b,), generator=generator).to(x.device)
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    in_y = (ys >= (cy - size // 2)[:, None]) & (ys < (cy - size // 2 + size)[:, None])  # (B, H)
    in_x = (xs >= (cx - size // 2)[:, None]) & (xs < (cx - size // 2 + size)[:, None])  # (B, W)
    hole = in_y[:, :, None] & in_x[:, None, :]  # (B, H, W)
    return x.masked_fill(hole[:, None], 0.0)


def augment(x: torch.Tensor, generator: torch.Generator, *, crop_pad: int = 0,
            flip: bool = False, cutout_size: int = 0) -> torch.Tensor:
    """The training transforms in their usual order: crop, flip, cutout."""
    x = random_crop(x, crop_pad, generator)
    if flip:
        x = hflip(x, generator)
    return cutout(x, cutout_size, generator)


def _format(x: torch.Tensor):
    return torch.channels_last if x.dim() == 4 and x.is_contiguous(
        memory_format=torch.channels_last) and not x.is_contiguous() else torch.contiguous_format
