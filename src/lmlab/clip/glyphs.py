"""Font glyphs as images: render once (cached per class), then place on a light background at
a random scale and offset for each drawn sample. Shared by the emoji and icon sources."""

from __future__ import annotations

import random

from PIL import Image, ImageDraw, ImageFont


def render(font: ImageFont.FreeTypeFont, char: str, colour: bool) -> Image.Image | None:
    """The glyph of ``char`` cropped to its ink (RGBA), or None when the font draws nothing."""
    side = int(font.size * 1.6)
    img = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    pen = ImageDraw.Draw(img)
    if colour:
        pen.text((0, 0), char, font=font, embedded_color=True)
    else:
        pen.text((0, 0), char, font=font, fill=(0, 0, 0, 255))
    box = img.getbbox()
    return img.crop(box) if box else None


def place(glyph: Image.Image, rng: random.Random, size: int) -> Image.Image:
    """The glyph scaled to 60-90% of the side at a random offset, on a light grey."""
    shade = 255 - rng.randrange(0, 30)
    canvas = Image.new("RGB", (size, size), (shade, shade, shade))
    fit = rng.uniform(0.6, 0.9) * size / max(glyph.size)
    w, h = max(1, round(glyph.width * fit)), max(1, round(glyph.height * fit))
    small = glyph.resize((w, h), Image.Resampling.LANCZOS)
    x, y = rng.randint(0, size - w), rng.randint(0, size - h)
    canvas.paste(small, (x, y), small)
    return canvas
