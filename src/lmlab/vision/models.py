"""The vision lab's models, written out (torchvision does not import beside our torch pin).

Shapes: B batch, C channels, H x W image, K classes. Every model maps (B, C, H, W) -> (B, K).
``build_model(name, ...)`` is the one entry point; ``MODELS`` lists the names.
"""

from __future__ import annotations

import torch
from torch import nn

from lmlab.errors import ConfigError
from lmlab.vision import MODELS


class MLP(nn.Module):
    """Flatten -> [Linear -> ReLU] x len(hidden) -> Linear."""

    def __init__(self, in_features: int, n_classes: int, hidden=(256, 128)):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        for h in hidden:
            layers += [nn.Linear(in_features, h), nn.ReLU(inplace=True)]
            in_features = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(in_features, n_classes)

    def forward(self, x):
        return self.head(self.body(x))


def conv_bn(c_in: int, c_out: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    """Conv (no bias: BN has one) -> BatchNorm -> ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class CNN(nn.Module):
    """Stages of ``depth`` conv-BN-ReLU blocks, each stage but the last followed by a 2x2
    max-pool; then global average pool and a linear head. widths (32, 64, 128), depth 1 on
    28x28: 94K parameters, 28x28 -> 14x14 -> 7x7. ``depth`` may be one count per stage (extra
    blocks at the low resolutions cost little memory traffic)."""

    def __init__(self, in_channels: int, n_classes: int, widths=(32, 64, 128), depth=1):
        super().__init__()
        depths = [depth] * len(widths) if isinstance(depth, int) else list(depth)
        if len(depths) != len(widths):
            raise ConfigError(f"cnn: {len(depths)} depths for {len(widths)} widths")
        stages, c = [], in_channels
        for i, (w, d) in enumerate(zip(widths, depths)):
            blocks = [conv_bn(c if j == 0 else w, w) for j in range(d)]
            if i < len(widths) - 1:
                blocks.append(nn.MaxPool2d(2))
            stages.append(nn.Sequential(*blocks))
            c = w
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c, n_classes)

    def forward(self, x):
        return self.head(self.pool(self.stages(x)))


class BasicBlock(nn.Module):
    """ResNet's two 3x3 convs with an identity (or 1x1 projection) shortcut (He et al. 2016)."""

    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int = 1):
        super().__init__()
        out = width * self.expansion
        self.conv1 = conv_bn(c_in, width, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(width, out, 3, 1, 1, bias=False), nn.BatchNorm2d(out))
        self.short = _shortcut(c_in, out, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.conv2(self.conv1(x)) + self.short(x))


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride, as in ResNet v1.5) -> 1x1 expand x4."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1):
        super().__init__()
        out = width * self.expansion
        self.conv1 = conv_bn(c_in, width, 1, k=1)
        self.conv2 = conv_bn(width, width, stride)
        self.conv3 = nn.Sequential(nn.Conv2d(width, out, 1, bias=False), nn.BatchNorm2d(out))
        self.short = _shortcut(c_in, out, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + self.short(x))


def _shortcut(c_in: int, out: int, stride: int) -> nn.Module:
    if stride == 1 and c_in == out:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(c_in, out, 1, stride, bias=False), nn.BatchNorm2d(out))


class ResNet(nn.Module):
    """stem -> stages of blocks (the first block of stages 2.. halves H and W) -> pool -> head.

    ``stem="imagenet"``: 7x7/2 conv + 3x3/2 max-pool (224 -> 56); ``"cifar"``: one 3x3 conv,
    no downsampling (for 28-32 pixel images)."""

    def __init__(self, block, layers, widths, in_channels: int, n_classes: int,
                 stem: str = "cifar"):
        super().__init__()
        w0 = widths[0]
        if stem == "imagenet":
            self.stem = nn.Sequential(conv_bn(in_channels, w0, 2, k=7),
                                      nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = conv_bn(in_channels, w0)
        stages, c = [], w0
        for i, (n, w) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(n):
                blocks.append(block(c, w, 2 if (i > 0 and j == 0) else 1))
                c = w * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c, n_classes)

    def forward(self, x):
        return self.head(self.pool(self.stages(self.stem(x))))


class ViT(nn.Module):
    """Patches (a strided conv) + class token + learned positions -> pre-norm Transformer
    encoder -> LayerNorm -> head on the class token (Dosovitskiy et al. 2021), small."""

    def __init__(self, in_channels: int, n_classes: int, image_size: int, patch: int = 4,
                 dim: int = 64, depth: int = 4, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        if image_size % patch:
            raise ConfigError(f"vit: image size {image_size} is not a multiple of the patch "
                              f"size {patch}")
        n = (image_size // patch) ** 2
        self.patches = nn.Conv2d(in_channels, dim, patch, patch)  # (B, D, H/p, W/p)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x):
        t = self.patches(x).flatten(2).transpose(1, 2)  # (B, N, D)
        t = torch.cat([self.cls.expand(len(t), -1, -1), t], 1) + self.pos  # (B, N+1, D)
        return self.head(self.norm(self.encoder(t))[:, 0])  # (B, K)


def build_model(name: str, *, in_channels: int, n_classes: int, image_size: int,
                widths=(32, 64, 128), depth=1, pretrained: bool = False) -> nn.Module:
    """A fresh model by name (``widths``/``depth`` shape ``cnn``; ``pretrained`` loads
    ImageNet weights into ``efficientnet-lite0``, the one model that has them)."""
    if pretrained and name != "efficientnet-lite0":
        raise ConfigError(f"pretrained=true: only efficientnet-lite0 has weights, not {name}")
    if name == "efficientnet-lite0":
        from lmlab.vision.efficientnet import efficientnet_lite0

        return efficientnet_lite0(n_classes, in_channels, pretrained)
    if name == "mlp":
        return MLP(in_channels * image_size * image_size, n_classes)
    if name == "cnn":
        return CNN(in_channels, n_classes, tuple(widths), depth if isinstance(depth, int)
                   else tuple(depth))
    if name in ("resnet8", "resnet20"):  # CIFAR ResNets: 6n+2 layers, widths 16/32/64
        n = {"resnet8": 1, "resnet20": 3}[name]
        return ResNet(BasicBlock, (n, n, n), (16, 32, 64), in_channels, n_classes)
    if name == "resnet18":
        return ResNet(BasicBlock, (2, 2, 2, 2), (64, 128, 256, 512), in_channels, n_classes,
                      stem="imagenet")
    if name == "resnet50":
        return ResNet(Bottleneck, (3, 4, 6, 3), (64, 128, 256, 512), in_channels, n_classes,
                      stem="imagenet")
    if name == "vit":
        return ViT(in_channels, n_classes, image_size)
    raise ConfigError(f"model={name!r}: choose one of {', '.join(MODELS)}")


def conv_stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of each conv stage, for feature maps: the stem and stages of a ResNet,
    the stages of a CNN; empty for models without convolution stages."""
    from lmlab.vision.efficientnet import EfficientNetLite0

    if isinstance(model, EfficientNetLite0):  # the last block of each resolution
        return [(f"block{i}", model._blocks[i]) for i in (0, 2, 4, 7, 14)]
    out = []
    if isinstance(model, ResNet):
        out.append(("stem", model.stem))
    stages = getattr(model, "stages", None)
    if isinstance(stages, nn.Sequential):
        out += [(f"stage{i + 1}", s) for i, s in enumerate(stages)]
    return out
