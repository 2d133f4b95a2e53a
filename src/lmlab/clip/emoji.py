"""Emoji from Noto Color Emoji (Debian ``fonts-noto-color-emoji``), captioned by their Unicode
names ("grinning face with smiling eyes"). Colour glyphs render with PIL only at size 109 with
``embedded_color=True``; they are rendered there once and resized."""

from __future__ import annotations

import random
import unicodedata
from functools import lru_cache
from pathlib import Path

from lmlab.errors import ConfigError

FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
CAPTIONS = ("{name}", "a {name} emoji", "an emoji of a {name}")
_NOT_PICTURES = ("Cf", "Mn", "Me", "Zs", "Cc")  # joiners, selectors, combining marks, spaces


def font_path() -> Path:
    if not FONT.is_file():
        raise ConfigError(f"data=emoji needs the Noto Color Emoji font ({FONT}): install it "
                          "with `sudo apt-get install fonts-noto-color-emoji`")
    return FONT


@lru_cache(maxsize=1)
def _glyphs() -> dict:
    try:  # the font's character map (PIL has no reader for it)
        from fontTools.ttLib import TTFont
    except ImportError:
        raise ConfigError("data=emoji reads the font's character map with fontTools: "
                          "`pip install fonttools` (or lmlab[clip])") from None
    from PIL import ImageFont

    from lmlab.clip.glyphs import render

    path = font_path()
    cmap = TTFont(str(path), lazy=True)["cmap"].getBestCmap()
    font = ImageFont.truetype(str(path), 109)  # the one size its bitmaps come in
    out = {}
    for cp in sorted(cmap):
        ch = chr(cp)
        name = unicodedata.name(ch, "").lower()
        if cp < 0x2000 or not name or unicodedata.category(ch) in _NOT_PICTURES:
            continue
        glyph = render(font, ch, colour=True)
        if glyph is not None and name not in out:
            out[name] = glyph
    return out


def classes() -> list[str]:
    return list(_glyphs())


def draw(name: str, rng: random.Random, size: int):
    from lmlab.clip.glyphs import place

    return place(_glyphs()[name], rng, size), rng.choice(CAPTIONS).format(name=name)
