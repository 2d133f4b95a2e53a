"""Icon fonts shipped inside the ``qtawesome`` package (Font Awesome, Material Design, ...),
captioned by their names from the package's charmap JSON files ("arrow-left" -> "arrow left").
qtawesome itself is never imported (it needs Qt bindings): only its folder is read."""

from __future__ import annotations

import json
import random
from functools import cache, lru_cache
from pathlib import Path

from lmlab.errors import ConfigError

CAPTIONS = ("{name}", "a {name} icon", "an icon of a {name}")
RENDER_SIZE = 96


def fonts_folder() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("qtawesome")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("data=icons needs the icon fonts of the qtawesome package: "
                          "`pip install qtawesome` (Qt is not needed)")
    return Path(next(iter(spec.submodule_search_locations))) / "fonts"


def font_pairs(folder: Path) -> list[tuple[Path, Path]]:
    """(font.ttf, its charmap.json) pairs: ``x-1.0.ttf`` goes with ``x-charmap-1.0.json``."""
    pairs = []
    for charmap in sorted(folder.glob("*-charmap-*.json")):
        stem, version = charmap.stem.split("-charmap-")
        ttf = folder / f"{stem}-{version}.ttf"
        if ttf.is_file():
            pairs.append((ttf, charmap))
    if not pairs:
        raise ConfigError(f"data=icons: no icon fonts with charmaps in {folder}")
    return pairs


@lru_cache(maxsize=1)
def _glyphs() -> dict:
    """name -> (font file, character); the first font that names an icon wins."""
    out: dict = {}
    for ttf, charmap in font_pairs(fonts_folder()):
        for name, code in json.loads(charmap.read_text()).items():
            words = name.replace("-", " ").replace("_", " ").strip()
            if words and words not in out:
                out[words] = (ttf, chr(int(code, 16)) if isinstance(code, str) else chr(code))
    return out


@cache
def _font(path: Path):
    from PIL import ImageFont

    return ImageFont.truetype(str(path), RENDER_SIZE)


@cache
def _glyph(name: str):
    from lmlab.clip.glyphs import render

    ttf, ch = _glyphs()[name]
    return render(_font(ttf), ch, colour=False)


def classes() -> list[str]:
    return list(_glyphs())


def draw(name: str, rng: random.Random, size: int):
    from PIL import Image

    from lmlab.clip.glyphs import place

    glyph = _glyph(name)
    if glyph is None:  # a name whose glyph draws nothing: a blank image, still captioned
        glyph = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    return place(glyph, rng, size), rng.choice(CAPTIONS).format(name=name)
