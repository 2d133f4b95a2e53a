"""Training checkpoints: trainable weights, optimizer, RNG and data position in one folder,
written under a temp name and renamed, so a crash never leaves a half-written checkpoint."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from lmlab.runs import commit_folder, prune_checkpoints


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Only what the optimizer changes (LoRA weights for an adapter run, all for full FT)."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(folder: Path, step: int, *, model, optimizer, stream, extra: dict | None = None,
                    keep: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{step}"
    tmp = folder / f".tmp-step-{step}"
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save({
        "step": step,
        "model": trainable_state(model),
        "optimizer": optimizer.state_dict(),
        "data": stream.state_dict(),
        "rng": rng_state(),
        "extra": extra or {},
    }, tmp / "state.pt")
    commit_folder(tmp, final)
    prune_checkpoints(folder, keep)
    return final


def load_checkpoint(path: Path, *, model, optimizer, stream) -> dict:
    state = torch.load(Path(path) / "state.pt", map_location="cpu", weights_only=False)
    params = dict(model.named_parameters())
    missing = [n for n in state["model"] if n not in params]
    if missing:
        raise RuntimeError(f"checkpoint {path} has weights this model lacks: {missing[:3]}")
    with torch.no_grad():
        for n, t in state["model"].items():
            params[n].copy_(t)
    optimizer.load_state_dict(state["optimizer"])
    stream.load_state_dict(state["data"])
    set_rng_state(state["rng"])
    return state
