"""Adapters by composition: peft injects LoRA into a standard transformers model."""

from __future__ import annotations

import torch

from lmlab.errors import UserError

# Projection names per architecture family; "all-linear" lets peft find them itself.
DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                        "down_proj"]


def add_lora(model: torch.nn.Module, *, r: int, alpha: float, dropout: float,
             targets: list[str], dora: bool = False) -> torch.nn.Module:
    """``dora``: weight-decomposed LoRA (a trained magnitude per output channel besides the
    low-rank direction update)."""
    from peft import LoraConfig, get_peft_model

    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    targets = targets or DEFAULT_LORA_TARGETS
    if targets != ["all-linear"]:
        missing = [t for t in targets if t not in names]
        if missing:
            raise UserError(f"lora_targets: {missing} are not modules of this model; "
                            f"linear layers here include "
                            f"{sorted(n for n in names if n.endswith('proj'))}")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=targets if targets != ["all-linear"] else "all-linear",
                        task_type="CAUSAL_LM", use_dora=dora)
    return get_peft_model(model, config)


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def is_peft(model) -> bool:
    return hasattr(model, "peft_config")
