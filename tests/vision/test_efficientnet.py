"""EfficientNet-Lite0: the packaged ImageNet weights load strictly into our module, the new
head, the grayscale stem, the frozen body; `lmlab vision` fine-tunes it (2 steps)."""

import json

import pytest
import torch

from lmlab.cli import main
from lmlab.vision.efficientnet import (
    EfficientNetLite0,
    efficientnet_lite0,
    imagenet_state,
)


def test_imagenet_weights_load_into_every_tensor():
    state = imagenet_state()
    model = efficientnet_lite0(10, 3, pretrained=True)
    own = model.state_dict()
    assert set(own) == set(state)  # strict: every name of the package, nothing else
    for k, v in state.items():
        if not k.startswith("_fc."):
            assert torch.equal(own[k], v), k
    assert own["_fc.weight"].shape == (10, 1280)
    assert sum(p.numel() for n, p in model.named_parameters()
               if not n.startswith("_fc.")) == 4_652_008 - 1_281_000


def test_grayscale_stem_sums_rgb_and_shapes():
    gray = efficientnet_lite0(10, 1, pretrained=True)
    rgb = imagenet_state()["_conv_stem.weight"]
    assert torch.equal(gray._conv_stem.weight, rgb.sum(1, keepdim=True))
    x = torch.rand(1, 1, 32, 32)
    gray.eval()
    # a gray image through the summed stem == the same image as 3 equal channels through RGB
    full = EfficientNetLite0(1000, 3)
    full.load_state_dict(imagenet_state())
    full._fc = gray._fc
    full.eval()
    assert torch.allclose(gray(x), full(x.expand(1, 3, 32, 32)), atol=1e-4)
    assert gray(torch.zeros(2, 1, 224, 224)).shape == (2, 10)


def test_freeze_trains_only_the_head_and_keeps_the_body_in_eval():
    model = efficientnet_lite0(5, 3, pretrained=False)
    model.freeze()
    model.train()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["_fc.weight", "_fc.bias"]
    assert not model._bn0.training and not model._blocks[3]._bn1.training
    assert model._fc.training


@pytest.mark.slow
def test_stage_fine_tunes_the_head_then_all(tmp_path):
    common = ("data=digits", "model=efficientnet-lite0", "batch_size=16", "max_steps=2",
              "progress=false", "flops_table=false", "probe_every=1", "insight=true")
    head = tmp_path / "head"
    assert main(["vision", *common, "pretrained=true", "train_layers=head",
                 f"output_dir={head}"]) == 0
    before = torch.load(head / "final/model.pt", weights_only=True)
    assert torch.equal(before["_blocks.3._depthwise_conv.weight"],
                       imagenet_state()["_blocks.3._depthwise_conv.weight"])  # frozen
    assert (head / "insight/feature_maps.png").is_file()
    assert main(["vision", *common, f"init={head}", f"output_dir={tmp_path / 'all'}"]) == 0
    after = torch.load(tmp_path / "all/final/model.pt", weights_only=True)
    assert not torch.equal(after["_blocks.3._depthwise_conv.weight"],
                           before["_blocks.3._depthwise_conv.weight"])
    s = json.loads((tmp_path / "all/summary.json").read_text())
    assert s["steps"] == 2 and s["params"] > 3_000_000
    assert s["start"] == "init run" and s["train_layers"] == "all"
    assert json.loads((head / "summary.json").read_text())["start"] == "imagenet"


def test_set_input_maps_the_data_scale_to_the_weights_and_resizes():
    import torch.nn.functional as F

    from lmlab.vision.efficientnet import INPUT_MEAN, INPUT_STD

    torch.manual_seed(0)
    model = efficientnet_lite0(10, 1, pretrained=False).eval()
    x01 = torch.rand(2, 1, 28, 28)  # pixels on the 0..1 scale
    mean, std = torch.tensor([0.3]), torch.tensor([0.35])
    with torch.no_grad():
        plain = model((F.interpolate(x01, size=(56, 56), mode="bilinear") - INPUT_MEAN)
                      / INPUT_STD)  # (x01 - 0.498) / 0.502 at 56x56, by hand
        model.set_input(mean, std, 56)
        adapted = model((x01 - 0.3) / 0.35)  # the stage's normalisation, at 28x28
    assert torch.allclose(adapted, plain, atol=1e-5)
    assert "in_scale" not in model.state_dict()  # not saved: the data recomputes it
