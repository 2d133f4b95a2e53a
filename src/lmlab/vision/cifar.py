"""CIFAR-10 as its authors distribute it, read without torchvision: ``data=cifar10:<path>``.

``<path>`` is the downloaded archive (``cifar-10-python.tar.gz`` or ``cifar-10-binary.tar.gz``,
read in place) or a folder holding its files (``data_batch_1`` .. ``data_batch_5`` and
``test_batch``, pickled, or the same names with ``.bin``), directly or one folder down
(``cifar-10-batches-py/``). Each image is 3,072 bytes: the red, green and blue 32x32 planes.

- Python version: each batch is a dict pickled by Python 2 (``b"data"``: uint8 (N, 3072),
  ``b"labels"``). Pickles can run code, so this reader only accepts what such a file holds:
  numpy arrays, dtypes and plain containers; any other global is a DataError.
- Binary version: records of 1 label byte + 3,072 image bytes; ``batches.meta.txt`` names the
  classes.

When only ``test_batch`` is there (the 10k test set some packages carry alone) both splits come
from it: a seeded 80/20 split, which the run's log says.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import torch

from lmlab.errors import DataError, UserError
from lmlab.vision.data import ImageSet, check_labels, seeded_split

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
RECORD = 3 * 32 * 32
TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST = "test_batch"


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers; refuses every other global."""

    def find_class(self, module: str, name: str):
        import numpy as np

        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and \
                name == "_reconstruct":
            return np._core.multiarray._reconstruct
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # bytes pickled by Python 3, protocol 2
            import codecs

            return codecs.encode
        raise pickle.UnpicklingError(f"refusing {module}.{name}: a CIFAR batch holds only "
                                     f"numpy arrays")


class _Files:
    """The batch files of an archive or a folder, by base name (``test_batch``,
    ``test_batch.bin``, ``batches.meta.txt``); an archive's are read once, in one pass."""

    WANTED = frozenset({*TRAIN, TEST, "batches.meta.txt"})

    def __init__(self, path: Path):
        self.path = path
        self.names: dict[str, object] = {}
        if path.is_file():
            try:
                with tarfile.open(path) as tar:
                    for m in tar:
                        base = m.name.rsplit("/", 1)[-1]
                        if m.isfile() and base.removesuffix(".bin") in self.WANTED \
                                and base not in self.names:
                            self.names[base] = (m.name, tar.extractfile(m).read())
            except (tarfile.TarError, OSError, EOFError) as e:
                raise DataError(f"not a readable CIFAR-10 archive ({e})", file=str(path)) \
                    from None
        elif path.is_dir():
            for f in sorted(path.glob("*")) + sorted(path.glob("*/*")):
                if f.is_file():
                    self.names.setdefault(f.name, f)
        else:
            raise UserError(f"data=cifar10:{path}: no such file or folder (download "
                            f"cifar-10-python.tar.gz from the CIFAR-10 page and point at it)")

    def where(self, name: str) -> str:
        item = self.names[name]
        return f"{self.path}:{item[0]}" if isinstance(item, tuple) else str(item)

    def read(self, name: str) -> bytes:
        item = self.names[name]
        return item[1] if isinstance(item, tuple) else Path(item).read_bytes()


def _python_batch(raw: bytes, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        batch = _ArraysOnly(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise DataError(f"not a CIFAR-10 python batch ({e})", file=where) from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError("a CIFAR-10 python batch is a dict with b'data' and b'labels'",
                        file=where)
    data = torch.as_tensor(batch[b"data"])
    labels = torch.as_tensor(list(batch[b"labels"]), dtype=torch.long)
    if data.dtype != torch.uint8 or data.dim() != 2 or data.shape[1] != RECORD:
        raise DataError(f"b'data' is {tuple(data.shape)} {data.dtype}; expected (N, {RECORD}) "
                        f"uint8", file=where)
    if len(labels) != len(data):
        raise DataError(f"{len(data)} images but {len(labels)} labels", file=where)
    return data, labels


def _binary_batch(raw: bytes, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not raw or len(raw) % (RECORD + 1):
        raise DataError(f"{len(raw)} bytes is not a whole number of {RECORD + 1}-byte records "
                        f"(1 label byte + a 32x32x3 image): truncated?", file=where)
    rows = torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(-1, RECORD + 1)
    return rows[:, 1:].clone(), rows[:, 0].long()


def _batch(files: _Files, stem: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    if stem in files.names:
        return _python_batch(files.read(stem), files.where(stem))
    if f"{stem}.bin" in files.names:
        return _binary_batch(files.read(f"{stem}.bin"), files.where(f"{stem}.bin"))
    return None


def _classes(files: _Files) -> tuple[str, ...]:
    if "batches.meta.txt" in files.names:
        names = [n.strip() for n in files.read("batches.meta.txt").decode().splitlines()]
        names = [n for n in names if n]
        if len(names) == len(CLASSES):
            return tuple(names)
    return CLASSES


def load_cifar10(path: Path | str, split: str, *, seed: int = 0,
                 test_fraction: float = 0.2) -> tuple[torch.Tensor, torch.Tensor, tuple, bool]:
    """``x`` uint8 (N, 3, 32, 32), ``y`` int64, the class names, and whether the split was
    carved out of ``test_batch`` alone (no training batches found)."""
    files = _Files(Path(path))
    test = _batch(files, TEST)
    if test is None:
        raise UserError(f"data=cifar10:{path}: no test_batch (or test_batch.bin) in it; expected "
                        f"the CIFAR-10 python or binary version")
    parts = [b for b in (_batch(files, s) for s in TRAIN) if b is not None]
    carved = not parts
    if carved:
        part = seeded_split(ImageSet(*test, CLASSES), split, test_fraction, seed)
        x, y = part.x, part.y
    elif split == "test":
        x, y = test
    else:
        x, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    check_labels(y, len(CLASSES), f"{path} ({split})")
    return x.reshape(-1, 3, 32, 32), y, _classes(files), carved
