"""`lmlab vision` on sklearn's 8x8 digits with tiny models: the smoke test, the shared loop,
exact resume, gradient accumulation, subsets, the LR range test, DDP = one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lmlab.cli import main
from tests.tolerance import approx_fp32, sum_terms

ROOT = Path(__file__).resolve().parents[2]
TINY = ("data=digits", "widths=[8,16]", "batch_size=32", "progress=false", "log_every=1",
        "probe_every=1", "eval_batch_size=400", "flops_table=false", "insight=false")


def _vision(out: Path, *extra) -> tuple[int, Path]:
    return main(["vision", f"output_dir={out}", *TINY, *extra]), out


def _weights(run: Path) -> dict:
    return torch.load(run / "final" / "model.pt", weights_only=True)


def test_three_step_smoke_through_the_shared_loop(tmp_path, loop_spy):
    from lmlab.vision.train import ClassifyObjective, ImageStream

    seen = loop_spy
    rc, run = _vision(tmp_path / "r", "max_steps=3", "crop_pad=1", "flip=true", "cutout=2",
                      "label_smoothing=0.1", "channels_last=true", "flops_table=true",
                      "insight=true")
    assert rc == 0
    assert isinstance(seen["objective"], ClassifyObjective)
    assert isinstance(seen["stream"], ImageStream) and seen["kw"]["save_buffers"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["params"] > 0 and 0 <= summary["test_accuracy"] <= 1
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and "train/accuracy" in rows[0]
    for f in ("confusion.json", "confusion.png", "feature_maps.png", "gradnorms.jsonl"):
        assert (run / "insight" / f).is_file(), f
    norms = [json.loads(line) for line in (run / "insight/gradnorms.jsonl").read_text().splitlines()]
    assert [n["step"] for n in norms] == [1, 2, 3] and norms[0]["head"] > 0
    table = json.loads((run / "flops.json").read_text())["models"]
    assert {r["model"] for r in table} >= {"mlp", "cnn", "resnet18", "resnet50", "vit"}
    cm = json.loads((run / "insight/confusion.json").read_text())["matrix"]
    assert sum(map(sum, cm)) == summary["test_images"] == 359

    from lmlab.report import build_report

    md = Path(build_report([run], tmp_path / "report")["md"]).read_text()
    for part in ("## Vision", "Vision runs", "Parameters and FLOPs per model", "resnet50",
                 "confusion matrix", "misclassified", "feature maps", "gradient norm"):
        assert part in md, part


def test_resume_auto_continues_exactly(tmp_path):
    # BN statistics, SGD momentum, augmentation draws and the data position must all resume
    common = ("schedule=constant", "optimizer=sgd", "lr=0.05", "crop_pad=1", "flip=true",
              "cutout=2", "save_every=2")
    assert _vision(tmp_path / "full", *common, "max_steps=4")[0] == 0
    assert _vision(tmp_path / "part", *common, "max_steps=2")[0] == 0
    assert _vision(tmp_path / "part", *common, "max_steps=4", "resume=auto")[0] == 0
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    assert any("running_mean" in k for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    last = [json.loads(p.read_text().splitlines()[-1])
            for p in (tmp_path / "full/metrics.jsonl", tmp_path / "part/metrics.jsonl")]
    assert last[0]["step"] == last[1]["step"] == 4
    assert last[0]["train/loss"] == last[1]["train/loss"]


# an MLP has no BatchNorm, so split batches compute the same gradient (up to fp32 round-off)
MLP = ("model=mlp", "optimizer=sgd", "momentum=0", "lr=0.1", "schedule=constant",
       "max_steps=3", "crop_pad=1", "flip=true")
# roundings on the longest path per step (forward over 64, 256, 128 inputs, backward over the
# batch of 32 and the widths), three steps
TERMS = 3 * sum(sum_terms(n) for n in (64, 256, 128, 32, 256, 128, 10))


def test_grad_accumulation_equals_the_big_batch(tmp_path):
    assert _vision(tmp_path / "big", *MLP, "batch_size=32")[0] == 0
    assert _vision(tmp_path / "acc", *MLP, "batch_size=16", "grad_accum=2")[0] == 0
    a, b = _weights(tmp_path / "big"), _weights(tmp_path / "acc")
    for k in a:
        assert b[k].flatten().tolist() == approx_fp32(a[k].flatten().tolist(), TERMS), k


def test_subset_and_lr_range_test(tmp_path):
    rc, run = _vision(tmp_path / "s", "max_steps=2", "subset=facility", "subset_fraction=0.25",
                      "lr_find=true", "lr_find_steps=8")
    assert rc == 0
    s = json.loads((run / "summary.json").read_text())
    assert s["subset"]["method"] == "facility" and s["subset"]["weighted"]
    assert s["train_images"] == s["subset"]["images"] < 0.3 * s["subset"]["of"]
    sweep = json.loads((run / "lr_range.json").read_text())
    assert len(sweep["lr"]) == len(sweep["loss"]) <= 8 and sweep["lr"][0] == 1e-5


def _launch(out: Path, nproc: int, batch: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), str(ROOT)]), "HF_HUB_OFFLINE": "1"}
    args = ["vision", f"output_dir={out}", *TINY, *MLP, f"batch_size={batch}"]
    cmd = ([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
            "--standalone", "-m", "lmlab", *args] if nproc > 1
           else [sys.executable, "-m", "lmlab", *args])
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {"losses": [r["train/loss"] for r in rows], "weights": _weights(out)}


@pytest.mark.slow
def test_ddp_two_ranks_equal_one_process(tmp_path):
    two = _launch(tmp_path / "ddp", 2, 16)  # 2 gloo ranks x 16 = one process x 32
    one = _launch(tmp_path / "one", 1, 32)
    assert two["losses"] == approx_fp32(one["losses"], TERMS)
    for k, v in one["weights"].items():
        assert two["weights"][k].flatten().tolist() == approx_fp32(v.flatten().tolist(),
                                                                    TERMS), k


def test_subset_on_a_proxy_run(tmp_path):
    """ccs: a short proxy CNN scores every image, then half of each class is chosen."""
    rc, run = _vision(tmp_path / "c", "max_steps=1", "subset=ccs", "subset_fraction=0.5",
                      "subset_proxy_epochs=0.2")
    assert rc == 0
    s = json.loads((run / "summary.json").read_text())["subset"]
    assert s["method"] == "ccs" and s["features"] == "proxy" and not s["weighted"]
    assert abs(s["images"] - 0.5 * s["of"]) <= 10  # half of each of the 10 classes, rounded
    rc, run = _vision(tmp_path / "k", "max_steps=1", "subset=kcenter", "subset_features=proxy",
                      "subset_proxy_epochs=0.2")
    assert rc == 0
    assert json.loads((run / "summary.json").read_text())["subset"]["method"] == "kcenter-proxy"
    # trimmed (coreset.yaml's choice): the same fraction of every class, exact total
    rc, run = _vision(tmp_path / "t", "max_steps=1", "subset=trimmed", "subset_fraction=0.5",
                      "subset_proxy_epochs=0.2", "subset_prune_easy=0.2")
    assert rc == 0
    s = json.loads((run / "summary.json").read_text())["subset"]
    assert s["method"] == "trimmed" and s["images"] == round(0.5 * s["of"])
    assert sum(s["per_class"]) == s["images"] and len(s["per_class"]) == 10
