"""Image-caption data for CLIP: the sources' rows rendered into tensors, the held-out classes,
and the batch stream the shared loop reads.

A drawn source (shapes, emoji, icons) is a module with ``classes()`` and ``draw(name, rng,
size) -> (PIL image, caption)``; a folder gives fixed rows. Held-out classes are chosen so
that every word of their names appears in a training class's name (``covered_holdout``):
zero-shot on them asks the model to compose words it has seen into a combination it has not.
"""

from __future__ import annotations

import importlib
import random
from dataclasses import dataclass

import torch

from lmlab.clip import SOURCES
from lmlab.errors import ConfigError, DataError


@dataclass
class Split:
    x: torch.Tensor  # (N, 3, S, S) uint8
    captions: list[str]
    labels: torch.Tensor  # (N,) index into ClipData.classes

    def __len__(self) -> int:
        return len(self.captions)


@dataclass
class ClipData:
    train: Split
    test_seen: Split  # new images of the training classes
    test_heldout: Split  # images of classes no training caption names
    classes: list[str]  # every class: the training ones, then the held-out ones
    n_seen: int  # classes[:n_seen] are the training classes

    @property
    def heldout(self) -> list[str]:
        return self.classes[self.n_seen:]


def covered_holdout(classes: list[str], fraction: float, seed: int) -> list[str]:
    """About ``fraction`` of ``classes`` whose every word is still in some kept class."""
    rng = random.Random(seed)
    order = list(classes)
    rng.shuffle(order)
    want = round(fraction * len(classes))
    counts: dict[str, int] = {}
    for c in classes:
        for w in set(c.split()):
            counts[w] = counts.get(w, 0) + 1
    held = []
    for c in order:
        if len(held) >= want:
            break
        words = set(c.split())
        if all(counts[w] > 1 for w in words):  # another kept class still has each word
            held.append(c)
            for w in words:
                counts[w] -= 1
    return held


def parse_sources(spec: str) -> list[str]:
    if spec.startswith("folder:"):
        return [spec]
    names = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in SOURCES]
    if bad or not names:
        raise ConfigError(f"data={spec!r}: use {', '.join(SOURCES)} (several joined by commas) "
                          "or folder:<path> (images + captions.jsonl / captions.tsv)")
    return names


def _to_tensor(images) -> torch.Tensor:
    import numpy as np

    return torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2)


def _split(rows, index: dict[str, int], size: int) -> Split:
    images, captions, names = zip(*rows) if rows else ((), (), ())
    x = _to_tensor(images) if rows else torch.zeros(0, 3, size, size, dtype=torch.uint8)
    return Split(x.contiguous(), list(captions),
                 torch.tensor([index[n] for n in names], dtype=torch.long))


def _drawn(cfg) -> ClipData:
    from lmlab.common import print0

    modules = {n: importlib.import_module(f"lmlab.clip.{n}") for n in parse_sources(cfg.data)}
    owner: dict[str, str] = {}
    for name, mod in modules.items():
        names = mod.classes()
        if cfg.max_classes and len(names) > cfg.max_classes:
            names = random.Random(cfg.seed).sample(names, cfg.max_classes)
        for c in names:
            owner.setdefault(c, name)
    classes = list(owner)
    held = covered_holdout(classes, cfg.holdout, cfg.seed)
    seen = [c for c in classes if c not in set(held)]
    rng = random.Random(cfg.seed)

    def rows(names: list[str], n: int, what: str):
        import sys

        from tqdm.auto import tqdm

        picks = [names[i % len(names)] for i in range(n)]
        bar = tqdm(picks, desc=f"render {what}", unit="img", file=sys.stderr, leave=False,
                   disable=n < 2000 or not getattr(cfg, "progress", True))
        return [(*modules[owner[c]].draw(c, rng, cfg.image_size), c) for c in bar]

    index = {c: i for i, c in enumerate(seen + held)}
    per, side = cfg.test_per_class, cfg.image_size
    train = _split(rows(seen, cfg.train_images, "training pairs"), index, side)
    test_seen = _split(rows(seen, per * len(seen), "test"), index, side)
    test_held = _split(rows(held, per * len(held), "held-out test"), index, side)
    print0(f"[lmlab] data: {cfg.data}: {len(classes)} classes ({len(held)} held out, every "
           f"word of each seen in training); {len(train):,} training pairs, "
           f"{len(test_seen):,} + {len(test_held):,} test images")
    return ClipData(train, test_seen, test_held, seen + held, len(seen))


def _folder(cfg) -> ClipData:
    from lmlab.clip.folder import load

    path = cfg.data.split(":", 1)[1]
    rows = load(path, cfg.image_size)
    classes = list(dict.fromkeys(c for _, _, c in rows))
    held = set(covered_holdout(classes, cfg.holdout, cfg.seed)) if len(classes) >= 5 else set()
    seen = [c for c in classes if c not in held]
    index = {c: i for i, c in enumerate(seen + [c for c in classes if c in held])}
    kept = [r for r in rows if r[2] not in held]
    random.Random(cfg.seed).shuffle(kept)
    cut = max(1, len(kept) // 5) if len(kept) > 1 else 0
    train = _split(kept[cut:], index, cfg.image_size)
    if len(train) < 2:
        raise DataError(f"{len(rows)} captioned images: CLIP needs at least 2 to train on "
                        "(each batch contrasts its pairs)", file=path)
    return ClipData(train, _split(kept[:cut], index, cfg.image_size),
                    _split([r for r in rows if r[2] in held], index, cfg.image_size),
                    list(index), len(seen))


def load_data(cfg) -> ClipData:
    return _folder(cfg) if cfg.data.startswith("folder:") else _drawn(cfg)


def normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, S, S) -> float32, per channel (x / 255 - mean) / std."""
    return (x.float() / 255 - mean[:, None, None]) / std[:, None, None]


class CaptionStream:
    """The vision lab's ``ImageStream`` over image indices, with each image's caption ids added
    (``ids`` cut to the batch's longest caption, ``eos``): seeded, resumable, rank-aware."""

    def __init__(self, images, ids: torch.Tensor, eos: torch.Tensor):
        self.images, self.ids, self.eos = images, ids, eos
        self.batch_size = images.batch_size

    @property
    def global_batch(self) -> int:
        return self.images.global_batch

    def next(self) -> dict:
        batch = self.images.next()
        idx = batch.pop("y")
        eos = self.eos[idx]
        return {**batch, "ids": self.ids[idx, :int(eos.max()) + 1], "eos": eos}

    def state_dict(self) -> dict:
        return self.images.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.images.load_state_dict(state)
