"""Every model's output shape, each layer's output shape, and the parameter counts and FLOPs
that published numbers or a hand count give."""

import pytest
import torch

from lmlab.vision.flops import count_parameters, forward_flops
from lmlab.vision.models import MODELS, build_model, conv_stages


def _shapes(model, x):
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: seen.append((n, tuple(o.shape))))
             for n, m in model.named_children()]
    model.eval()
    with torch.no_grad():
        out = model(x)
    for h in hooks:
        h.remove()
    return dict(seen), out


@pytest.mark.parametrize("name", [m for m in MODELS if m not in ("resnet18", "resnet50")])
def test_every_model_maps_images_to_logits(name):
    model = build_model(name, in_channels=1, n_classes=10, image_size=28)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_cnn_layer_shapes():
    model = build_model("cnn", in_channels=1, n_classes=10, image_size=28)
    x = torch.zeros(2, 1, 28, 28)
    outs = []
    for name, stage in conv_stages(model):
        x = stage(x)
        outs.append((name, tuple(x.shape)))
    assert outs == [("stage1", (2, 32, 14, 14)), ("stage2", (2, 64, 7, 7)),
                    ("stage3", (2, 128, 7, 7))]
    seen, _ = _shapes(model, torch.zeros(2, 1, 28, 28))
    assert seen["pool"] == (2, 128) and seen["head"] == (2, 10)
    assert count_parameters(model) == 94_186


@pytest.mark.parametrize("name,params,last", [("resnet18", 11_689_512, 512),
                                              ("resnet50", 25_557_032, 2048)])
def test_imagenet_resnets_have_the_published_shapes(name, params, last):
    # the parameter counts torchvision's resnet18 / resnet50 (1000 classes) report
    model = build_model(name, in_channels=3, n_classes=1000, image_size=224)
    assert count_parameters(model) == params
    x = torch.zeros(1, 3, 224, 224)
    outs = []
    model.eval()
    with torch.no_grad():
        for n, stage in conv_stages(model):
            x = stage(x)
            outs.append(tuple(x.shape[1:]))
    w = last // 8
    assert outs == [(64, 56, 56), (w, 56, 56), (2 * w, 28, 28), (4 * w, 14, 14),
                    (8 * w, 7, 7)]


def test_cifar_resnet_and_vit_layer_shapes():
    r = build_model("resnet20", in_channels=3, n_classes=10, image_size=32)
    seen, out = _shapes(r, torch.zeros(2, 3, 32, 32))
    assert seen["stem"] == (2, 16, 32, 32) and seen["stages"] == (2, 64, 8, 8)
    assert out.shape == (2, 10)
    v = build_model("vit", in_channels=1, n_classes=10, image_size=28)
    seen, out = _shapes(v, torch.zeros(2, 1, 28, 28))
    assert seen["patches"] == (2, 64, 7, 7) and seen["encoder"] == (2, 50, 64)
    assert seen["norm"] == (2, 50, 64) and out.shape == (2, 10)


def test_flops_match_a_hand_count():
    mlp = build_model("mlp", in_channels=1, n_classes=10, image_size=28)
    assert forward_flops(mlp, (1, 28, 28)) == 2 * (784 * 256 + 256 * 128 + 128 * 10)
    cnn = build_model("cnn", in_channels=1, n_classes=10, image_size=28)
    convs = 1 * 32 * 9 * 28 * 28 + 32 * 64 * 9 * 14 * 14 + 64 * 128 * 9 * 7 * 7
    assert forward_flops(cnn, (1, 28, 28)) == 2 * (convs + 128 * 10)


def test_cnn_depth_per_stage():
    # widths (32, 64, 128), depths (1, 2, 2): the 94K net + a 64->64 and a 128->128 conv-BN
    model = build_model("cnn", in_channels=1, n_classes=10, image_size=28, depth=(1, 2, 2))
    extra = (64 * 64 * 9 + 2 * 64) + (128 * 128 * 9 + 2 * 128)
    assert count_parameters(model) == 94_186 + extra == 278_890
    assert [len(s) for s in model.stages] == [2, 3, 2]  # conv blocks (+ a max-pool)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(Exception, match="2 depths for 3 widths"):
        build_model("cnn", in_channels=1, n_classes=10, image_size=28, depth=(1, 2))
