"""Image loaders: IDX files, digits, the folder-of-class-folders loader, normalisation."""

import gzip
import struct

import pytest
import torch
from PIL import Image

from lmlab.errors import DataError, UserError
from lmlab.vision import data as D


def _idx(path, array: torch.Tensor):
    head = bytes([0, 0, 8, array.dim()]) + struct.pack(f">{array.dim()}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + array.to(torch.uint8).numpy().tobytes())


def test_idx_round_trip_and_fashion_layout(tmp_path):
    x = torch.arange(3 * 4 * 5).reshape(3, 4, 5) % 256
    _idx(tmp_path / "t10k-images-idx3-ubyte.gz", x)
    _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", torch.tensor([0, 9, 3]))
    assert torch.equal(D.read_idx(tmp_path / "t10k-images-idx3-ubyte.gz"), x.to(torch.uint8))
    ds = D.load_fashion_mnist("test", tmp_path)
    assert ds.x.shape == (3, 1, 4, 5) and ds.y.tolist() == [0, 9, 3]
    assert ds.classes[9] == "ankle boot"


def test_idx_truncated_and_labels_out_of_range(tmp_path):
    _idx(tmp_path / "t10k-images-idx3-ubyte.gz", torch.zeros(2, 2, 2))
    _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", torch.tensor([1, 12]))
    with pytest.raises(DataError, match="label 12 at index 1 is out of range"):
        D.load_fashion_mnist("test", tmp_path)
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz") as f:
        raw = f.read()
    with gzip.open(tmp_path / "cut.gz", "wb") as f:
        f.write(raw[:-3])
    with pytest.raises(DataError, match="truncated"):
        D.read_idx(tmp_path / "cut.gz")


def test_missing_fashion_mnist_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "FASHION_DIR", tmp_path / "nowhere")
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        D.load_source("fashion-mnist", "train")
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte.gz is missing"):
        D.load_source(f"idx:{tmp_path}", "test")


def test_digits_split_is_disjoint_and_complete():
    train, test = D.load_digits_set("train"), D.load_digits_set("test")
    assert len(train) + len(test) == 1797 and len(test) == 359
    assert train.x.shape[1:] == (1, 8, 8) and int(train.x.max()) == 255


def test_folder_loader_converts_modes_and_sizes(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    Image.new("RGB", (10, 6), (255, 0, 0)).save(tmp_path / "cat" / "a.png")
    Image.new("L", (4, 4), 128).save(tmp_path / "cat" / "b.png")  # grayscale -> RGB
    Image.new("RGBA", (8, 8), (0, 0, 255, 0)).save(tmp_path / "dog" / "c.png")  # transparent
    ds = D.load_folder(tmp_path, size=8, channels=3)
    assert ds.classes == ("cat", "dog") and ds.y.tolist() == [0, 0, 1]
    assert ds.x.shape == (3, 3, 8, 8) and ds.x.dtype == torch.uint8
    assert ds.x[0, :, 4, 4].tolist() == [255, 0, 0]
    assert ds.x[1, :, 0, 0].tolist() == [128, 128, 128]
    assert ds.x[2, :, 0, 0].tolist() == [255, 255, 255]  # fully transparent: the white behind
    gray = D.load_folder(tmp_path, size=4, channels=1)
    assert gray.x.shape == (3, 1, 4, 4)


def test_normalise_gives_zero_mean_unit_std():
    x = torch.randint(0, 256, (50, 3, 4, 4), generator=torch.Generator().manual_seed(0))
    x = x.to(torch.uint8)
    mean, std = D.channel_stats(x)
    z = D.normalise(x, mean, std)
    assert z.mean(dim=(0, 2, 3)).abs().max() < 1e-5
    assert (z.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-5
