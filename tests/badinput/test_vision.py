"""Bad input to `lmlab vision`: image folders and IDX files a user could get wrong. Mixed
sizes and modes (grayscale, RGBA) are not errors: they are converted (tests/vision/test_data.py
checks the pixels; docs/vision.md says how)."""

import gzip
import struct

import pytest
from PIL import Image

TINY = ("max_steps=1", "batch_size=2", "progress=false", "flops_table=false", "insight=false",
        "image_size=8")


def _img(path, mode="RGB", size=(8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(path)


@pytest.fixture()
def folder(tmp_path):
    for cls in ("a", "b"):
        for i in range(3):
            _img(tmp_path / "imgs" / cls / f"{i}.png")
    return tmp_path / "imgs"


def test_a_non_image_file_is_named(fail, folder, tmp_path):
    (folder / "a" / "notes.txt").write_text("not a picture")
    f = fail("vision", f"data=folder:{folder}", f"output_dir={tmp_path / 'run'}", *TINY)
    assert f.says("notes.txt", "not a readable image", "only image files")
    assert not (tmp_path / "run").exists()  # nothing written before the data is read


def test_a_truncated_png_is_named(fail, folder, tmp_path):
    good = (folder / "b" / "0.png").read_bytes()
    (folder / "b" / "cut.png").write_bytes(good[:30])
    assert fail("vision", f"data=folder:{folder}", f"output_dir={tmp_path / 'r'}",
                *TINY).says("cut.png", "not a readable image")


def test_an_empty_class_folder_is_named(fail, folder, tmp_path):
    (folder / "c").mkdir()
    assert fail("vision", f"data=folder:{folder}", f"output_dir={tmp_path / 'r'}",
                *TINY).says("c", "class folder 'c' is empty")


def test_a_folder_without_class_folders(fail, tmp_path):
    _img(tmp_path / "flat" / "x.png")
    assert fail("vision", f"data=folder:{tmp_path / 'flat'}", f"output_dir={tmp_path / 'r'}",
                *TINY).says("flat", "no class folders")


def test_a_test_class_the_training_set_lacks_is_out_of_range(fail, tmp_path):
    for split, classes in (("train", ("a", "b")), ("test", ("a", "zebra"))):
        for cls in classes:
            _img(tmp_path / "d" / split / cls / "0.png", "L", (5, 9))
    assert fail("vision", f"data=folder:{tmp_path / 'd'}", f"output_dir={tmp_path / 'r'}",
                *TINY).says("zebra", "out of range", "same class folders")


def _idx(path, dims, body):
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + body)


def test_idx_labels_out_of_range(fail, tmp_path):
    d = tmp_path / "idx"
    d.mkdir()
    for split in ("train", "t10k"):
        _idx(d / f"{split}-images-idx3-ubyte.gz", (4, 8, 8), bytes(256))
        _idx(d / f"{split}-labels-idx1-ubyte.gz", (4,), bytes([1, 2, 11, 3]))
    assert fail("vision", f"data=idx:{d}", f"output_dir={tmp_path / 'r'}", *TINY).says(
        "train-labels-idx1-ubyte.gz", "label 11 at index 2 is out of range", "10 classes")


def test_idx_folder_missing_files_and_unknown_source(fail, tmp_path):
    (tmp_path / "empty").mkdir()
    assert fail("vision", f"data=idx:{tmp_path / 'empty'}", f"output_dir={tmp_path / 'r'}",
                *TINY).says("train-images-idx3-ubyte", "missing")
    assert fail("vision", "data=cifar", f"output_dir={tmp_path / 'r'}", *TINY).says(
        "data='cifar'", "folder:<path>")


def test_unknown_model_is_a_config_error(fail, tmp_path):
    f = fail("vision", "model=resnet34", f"output_dir={tmp_path / 'r'}", *TINY)
    assert f.rc == 2 and f.says("model", "resnet34")


def test_input_size_on_a_model_that_cannot_resize_is_a_config_error(fail, tmp_path):
    f = fail("vision", "data=digits", "model=cnn", "input_size=32", f"output_dir={tmp_path}/r",
             *TINY)
    assert f.rc == 2 and f.says("input_size", "efficientnet-lite0")
