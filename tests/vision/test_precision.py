"""dtype=auto for `lmlab vision`: bf16 autocast + channels-last only where the probe finds fast
bf16 AND the model is a dense convolution net wide enough to gain; fp32 on an AVX2-only CPU (a
faked probe table) and for the MLP, the ViT, EfficientNet and narrow CNNs; explicit dtypes keep
their meaning."""

import json

import pytest
import torch

from lmlab.cli import main
from lmlab.config import load_config
from lmlab.stages import vision
from lmlab.vision.setup import VISION_MIN_CONV_WIDTH, conv_width, precision

CPU = torch.device("cpu")


def _table(fp32, bf16):
    return {"model": "Fake CPU", "threads": 2,
            "matmul": {"fp32": {"gflops": fp32}, "bf16": {"gflops": bf16}}}


def _cfg(*overrides):
    return load_config(vision.Config, None, list(overrides))


@pytest.mark.parametrize("overrides,fast,label", [
    (("model=cnn", "widths=[32,64,128]"), True, "bf16 autocast"),  # AMX-like probe
    (("model=cnn", "widths=[32,64,128]"), False, "fp32"),  # AVX2-like probe: bf16 0.9x fp32
    (("model=cnn", "widths=[16,32]"), True, "fp32"),  # narrow: measured 0.94x in bf16
    (("model=resnet20",), True, "bf16 autocast"),
    (("model=mlp",), True, "fp32"),  # measured 0.84x in bf16
    (("model=vit",), True, "fp32"),
    (("model=efficientnet-lite0",), True, "fp32"),  # depthwise: bf16 steps pathologically slow
    (("model=cnn", "dtype=fp32"), True, "fp32"),
    (("model=cnn", "dtype=bf16"), False, "bf16")])  # asked for: bf16 weights
def test_auto_follows_the_probe_and_the_model(monkeypatch, overrides, fast, label):
    monkeypatch.delenv("LMLAB_AUTO_DTYPE", raising=False)
    monkeypatch.setattr("lmlab.common.probe_table",
                        lambda device, **kw: _table(100.0, 800.0 if fast else 90.0))
    assert precision(_cfg(*overrides), CPU).label == label


def test_conv_width_threshold():
    assert conv_width(_cfg("widths=[32,64]")) == 64 == VISION_MIN_CONV_WIDTH
    assert conv_width(_cfg("widths=[8,16]")) == 16 and conv_width(_cfg("model=mlp")) == 0


def test_auto_run_records_bf16_autocast_and_channels_last(tmp_path, monkeypatch):
    monkeypatch.setenv("LMLAB_AUTO_DTYPE", "bf16")
    out = tmp_path / "r"
    assert main(["vision", f"output_dir={out}", "data=digits", "widths=[8,64]", "batch_size=32",
                 "max_steps=2", "progress=false", "flops_table=false", "insight=false",
                 "probe_every=0"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["precision"] == "bf16 autocast" and s["channels_last"] is True
    w = torch.load(out / "final" / "model.pt", weights_only=True)
    assert all(v.dtype in (torch.float32, torch.int64) for v in w.values())  # fp32 masters
