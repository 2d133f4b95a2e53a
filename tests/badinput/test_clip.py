"""Bad input to `lmlab clip`: a user's folder of images + captions file that does not hold
together, an unknown source, and the packages the emoji / icon sources need."""

import json

import pytest
from PIL import Image

TINY = ("max_steps=1", "batch_size=2", "progress=false", "image_size=8", "widths=[4]",
        "text_dim=8", "text_depth=1", "heads=2", "embed_dim=4", "figures=false")


@pytest.fixture()
def folder(tmp_path):
    root = tmp_path / "pics"
    root.mkdir()
    rows = []
    for i in range(4):
        Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(root / f"{i}.png")
        rows.append({"image": f"{i}.png", "caption": f"picture {i}"})
    (root / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def _run(fail, root, tmp_path):
    return fail("clip", f"data=folder:{root}", f"output_dir={tmp_path / 'run'}", *TINY)


def test_the_good_folder_trains(folder, tmp_path):
    from lmlab.cli import main

    assert main(["clip", f"data=folder:{folder}", f"output_dir={tmp_path / 'ok'}", *TINY]) == 0


def test_an_image_file_that_is_not_an_image(fail, folder, tmp_path):
    (folder / "2.png").write_text("this is text, not a PNG")
    assert _run(fail, folder, tmp_path).says("2.png", "not an image")
    assert not (tmp_path / "run").exists()  # nothing written before the data is read


def test_a_caption_row_naming_a_missing_image(fail, folder, tmp_path):
    (folder / "1.png").unlink()
    assert _run(fail, folder, tmp_path).says("captions.jsonl:2", "field 'image'", "'1.png'")


def test_an_image_without_a_caption_row(fail, folder, tmp_path):
    Image.new("RGB", (8, 8)).save(folder / "extra.png")
    assert _run(fail, folder, tmp_path).says("captions.jsonl", "extra.png", "no caption row")


def test_a_tsv_row_without_a_caption(fail, folder, tmp_path):
    (folder / "captions.jsonl").unlink()
    (folder / "captions.tsv").write_text("0.png\tpicture 0\n1.png\n2.png\tx\n3.png\ty\n")
    assert _run(fail, folder, tmp_path).says("captions.tsv:2", "field 'caption'")


def test_a_jsonl_row_that_is_not_json(fail, folder, tmp_path):
    path = folder / "captions.jsonl"
    path.write_text(path.read_text().replace('"picture 2"}', '"picture 2"'))
    assert _run(fail, folder, tmp_path).says("captions.jsonl:3", "not JSON")


def test_an_empty_folder(fail, tmp_path):
    (tmp_path / "empty").mkdir()
    assert _run(fail, tmp_path / "empty", tmp_path).says("empty", "no images and no captions")


def test_images_without_a_captions_file(fail, folder, tmp_path):
    (folder / "captions.jsonl").unlink()
    assert _run(fail, folder, tmp_path).says("4 images but no captions file", "captions.tsv")


def test_an_unknown_source(fail, tmp_path):
    assert fail("clip", "data=shapes,photos", f"output_dir={tmp_path / 'r'}", *TINY).says(
        "data='shapes,photos'", "emoji", "folder:<path>")


def test_emoji_without_the_font_says_what_to_install(fail, tmp_path, monkeypatch):
    from lmlab.clip import emoji

    monkeypatch.setattr(emoji, "FONT", tmp_path / "NoSuchEmoji.ttf")
    emoji._glyphs.cache_clear()
    assert fail("clip", "data=emoji", f"output_dir={tmp_path / 'r'}", *TINY).says(
        "apt-get install fonts-noto-color-emoji")
    emoji._glyphs.cache_clear()


def test_icons_without_qtawesome_say_what_to_install(fail, tmp_path, monkeypatch):
    import importlib.util

    from lmlab.clip import icons

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "qtawesome" else real(name, *a))
    icons._glyphs.cache_clear()
    assert fail("clip", "data=icons", f"output_dir={tmp_path / 'r'}", *TINY).says(
        "pip install qtawesome")
    icons._glyphs.cache_clear()


def test_a_vit_patch_that_does_not_divide_the_image(fail, tmp_path):
    assert fail("clip", "model=vit", "patch=3", f"output_dir={tmp_path / 'r'}", *TINY).says(
        "image_size=8", "patch=3")
