"""Shapes drawn with PIL: a colour, a shape, a size and a position, and a caption that says
them ("a small red circle in the top left"). Always available; the tests use only this source.

Classes are "colour shape" (8 x 6 = 48). Every word of a held-out class ("red star") is seen
in training inside other classes ("red circle", "blue star"), the combination never.
"""

from __future__ import annotations

import random

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 160, 50), "blue": (30, 70, 220),
           "yellow": (235, 200, 20), "purple": (140, 50, 180), "orange": (245, 130, 20),
           "black": (20, 20, 20), "pink": (250, 130, 200)}
SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
POSITIONS = {"top left": (0.3, 0.3), "top right": (0.7, 0.3), "bottom left": (0.3, 0.7),
             "bottom right": (0.7, 0.7), "centre": (0.5, 0.5)}
SIZES = {"small": 0.16, "large": 0.28}  # radius as a fraction of the side
CAPTIONS = ("a {size} {name} in the {pos}", "a {name} in the {pos}", "a {size} {name}",
            "{name}, {pos}", "a {name}")
OVERSAMPLE = 2  # drawn at twice the side, then downsampled (smooth edges)


def classes() -> list[str]:
    return [f"{c} {s}" for s in SHAPES for c in COLOURS]


def _outline(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    import math

    if shape == "square":
        r *= 0.85
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    if shape == "triangle":
        return [(cx + r * math.cos(a), cy - r * math.sin(a))
                for a in (math.pi / 2, math.pi * 7 / 6, math.pi * 11 / 6)]
    if shape == "star":
        return [(cx + (r if i % 2 == 0 else r * 0.45) * math.cos(math.pi / 2 + i * math.pi / 5),
                 cy - (r if i % 2 == 0 else r * 0.45) * math.sin(math.pi / 2 + i * math.pi / 5))
                for i in range(10)]
    w = r * 0.35  # cross
    return [(cx - w, cy - r), (cx + w, cy - r), (cx + w, cy - w), (cx + r, cy - w),
            (cx + r, cy + w), (cx + w, cy + w), (cx + w, cy + r), (cx - w, cy + r),
            (cx - w, cy + w), (cx - r, cy + w), (cx - r, cy - w), (cx - w, cy - w)]


def draw(name: str, rng: random.Random, size: int) -> tuple[Image.Image, str]:
    """One image of class ``name`` ("red circle") at a random size and position (jittered
    around the named one), and its caption."""
    colour, shape = name.split(" ", 1)
    pos = rng.choice(list(POSITIONS))
    big = rng.choice(list(SIZES))
    side = size * OVERSAMPLE
    fx, fy = POSITIONS[pos]
    cx = (fx + rng.uniform(-0.06, 0.06)) * side
    cy = (fy + rng.uniform(-0.06, 0.06)) * side
    r = SIZES[big] * side * rng.uniform(0.9, 1.1)
    shade = 255 - rng.randrange(0, 30)  # a slightly grey background, never one exact colour
    img = Image.new("RGB", (side, side), (shade, shade, shade))
    pen = ImageDraw.Draw(img)
    if shape == "circle":
        pen.ellipse([cx - r, cy - r, cx + r, cy + r], fill=COLOURS[colour])
    else:
        pen.polygon(_outline(shape, cx, cy, r), fill=COLOURS[colour])
    caption = rng.choice(CAPTIONS).format(size=big, name=name, pos=pos)
    return img.resize((size, size), Image.Resampling.LANCZOS), caption
