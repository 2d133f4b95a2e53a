"""`val_fraction`: a seeded, per-class validation split carved out of the training images, which
`eval_every` scores instead of the test set (the test set is then scored once, at the end)."""

import json

import pytest
import torch

from lmlab.cli import main
from lmlab.errors import DataError
from lmlab.vision.data import ImageSet
from lmlab.vision.setup import split_validation


def _set(counts):
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    x = torch.arange(len(y), dtype=torch.uint8).view(-1, 1, 1, 1)  # x = the image's index
    return ImageSet(x, y, tuple(f"c{c}" for c in range(len(counts))))


def test_each_class_gives_its_share_and_the_parts_partition_the_set():
    ds = _set([10, 20, 5])
    rest, val = split_validation(ds, 0.2, seed=0)
    assert torch.bincount(val.y).tolist() == [2, 4, 1]  # round(0.2 n), at least one a class
    assert torch.bincount(rest.y).tolist() == [8, 16, 4]
    ids = sorted(rest.x.flatten().tolist() + val.x.flatten().tolist())
    assert ids == list(range(35))
    assert rest.x.flatten().tolist() == sorted(rest.x.flatten().tolist())  # order kept
    again = split_validation(ds, 0.2, seed=0)[1]
    other = split_validation(ds, 0.2, seed=1)[1]
    assert torch.equal(again.x, val.x) and not torch.equal(other.x, val.x)
    assert split_validation(ds, 0.0, seed=0) == (ds, None)


def test_a_class_too_small_to_split_is_named():
    with pytest.raises(DataError, match="class 'c1' has only 1 training images"):
        split_validation(_set([10, 1]), 0.1, seed=0)


def test_the_stage_evaluates_on_the_validation_images(tmp_path, monkeypatch):
    from lmlab.vision import setup as S

    scored, evaluate = [], S.evaluate

    def spy(cfg, model, images, tta=False):
        scored.append(len(images))
        return evaluate(cfg, model, images, tta)

    monkeypatch.setattr(S, "evaluate", spy)
    out = tmp_path / "r"
    rc = main(["vision", f"output_dir={out}", "data=digits", "widths=[8,16]", "batch_size=32",
               "progress=false", "flops_table=false", "insight=false", "max_steps=5",
               "log_every=2", "eval_every=2", "val_fraction=0.25"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["val_images"] + s["train_images"] == 1797 - 359 and s["test_images"] == 359
    assert abs(s["val_images"] - 0.25 * 1438) <= 10 and 0 <= s["val_accuracy"] <= 1
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "eval/accuracy" in r] == [2, 4]
    # steps 2 and 4, then the summary's val_accuracy: all on the validation images
    assert scored == [s["val_images"]] * 3
