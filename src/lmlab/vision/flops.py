"""Parameters and FLOPs of a model, measured by running it (the week-7 exercise).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` over one forward pass on a
single image: it counts the matmuls, convolutions and attention that run (2 FLOPs per
multiply-add); element-wise ops (BN, ReLU, pooling, adds) are not counted - they are <2% of a
CNN's FLOPs but dominate its memory traffic.
"""

from __future__ import annotations

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def forward_flops(model: nn.Module, shape: tuple[int, int, int]) -> int:
    """FLOPs of one forward pass of one image of ``shape`` (C, H, W), counted as it runs."""
    from torch.utils.flop_counter import FlopCounterMode

    was = model.training
    model.eval()
    x = torch.zeros(1, *shape, device=next(model.parameters()).device)
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused encoder path hides its matmuls
    try:
        with FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
        model.train(was)
    return int(counter.get_total_flops())


def model_table(names, *, in_channels: int, n_classes: int, image_size: int,
                **kwargs) -> list[dict]:
    """One row per model name: parameters, forward FLOPs per image, training FLOPs per image
    (forward + backward ~ 3x forward). The models are built on the meta device: shapes and
    the counted ops without allocating or initialising weights (ResNet-50's 25M in a blink)."""
    from lmlab.vision.models import build_model

    rows = []
    for name in names:
        with torch.device("meta"):
            model = build_model(name, in_channels=in_channels, n_classes=n_classes,
                                image_size=image_size, **kwargs)
            f = forward_flops(model, (in_channels, image_size, image_size))
        rows.append({"model": name, "params": count_parameters(model), "forward_flops": f,
                     "train_flops": 3 * f,
                     "input": f"{in_channels}x{image_size}x{image_size}"})
    return rows
