"""A user's folder of images and a captions file beside them.

    my-images/
      captions.jsonl   {"image": "cat1.png", "caption": "a cat asleep", "class": "cat"} per line
      (or captions.tsv: image <TAB> caption [<TAB> class])
      cat1.png ...

``class`` is optional (default: the caption); zero-shot classification uses it. Every image
needs a row and every row an image: a mismatch names the captions file and line.
"""

from __future__ import annotations

import json
from pathlib import Path

from lmlab.errors import DataError

CAPTION_FILES = ("captions.jsonl", "captions.tsv")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}


def _rows(path: Path) -> list[tuple[int, dict]]:
    from lmlab.textfile import read_lines

    rows = []
    for n, line in read_lines(path):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"not JSON: {err.msg}", file=str(path), line=n) from None
            if not isinstance(row, dict):
                raise DataError("expected an object {image, caption[, class]}", file=str(path),
                                line=n)
        else:
            parts = line.split("\t")
            row = dict(zip(("image", "caption", "class"), parts))
        for key in ("image", "caption"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise DataError("missing or empty", file=str(path), line=n, field=key)
        rows.append((n, row))
    return rows


def _open(path: Path, size: int):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"not an image PIL can read ({type(err).__name__}: {err})",
                        file=str(path)) from None


def load(folder: str, size: int) -> list[tuple[object, str, str]]:
    """(image, caption, class) rows of ``folder``, in the captions file's order."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError("no such folder", file=str(root))
    captions = next((root / f for f in CAPTION_FILES if (root / f).is_file()), None)
    images = sorted(p.name for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if captions is None:
        what = f"{len(images)} images but no" if images else "no images and no"
        raise DataError(f"{what} captions file ({' or '.join(CAPTION_FILES)})", file=str(root))
    rows = _rows(captions)
    if not rows:
        raise DataError("no caption rows", file=str(captions))
    named = set()
    for n, row in rows:
        if not (root / row["image"]).is_file():
            raise DataError(f"no image {row['image']!r} in {root}", file=str(captions), line=n,
                            field="image")
        named.add(row["image"])
    unnamed = [f for f in images if f not in named]
    if unnamed:
        raise DataError(f"{len(unnamed)} images have no caption row (e.g. {unnamed[:3]}): "
                        "add a row for each or move them out", file=str(captions))
    return [(_open(root / r["image"], size), r["caption"].strip(),
             str(r.get("class") or r["caption"]).strip()) for _, r in rows]
