"""Training checkpoints: trainable weights, optimizer, RNG and data position in one folder.

A checkpoint is written as ``.tmp-step-N/state.pt``, flushed to disk (fsync of the file and the
folder), then renamed to ``step-N`` and the parent folder synced: a kill or a power cut at any
moment leaves either the complete ``step-N`` or none, and ``latest_checkpoint`` sees only folders
named ``step-N`` that hold a ``state.pt``. Leftovers of a killed write are cleared before the
next one (``runs.tidy_checkpoints``).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from lmlab.errors import UserError
from lmlab.runs import commit_folder, fsync_path, prune_checkpoints, tidy_checkpoints
from lmlab.train.killpoints import KillMidWrite, armed, killpoint

SHARDED = "sharded"  # "model"/"optimizer" in state.pt when the tensors live in sharded/ (DCP)

# what every checkpoint holds (``extra`` is optional)
KEYS = ("step", "model", "optimizer", "data", "rng")


class CheckpointError(UserError):
    pass


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


def _write_state(path: Path, state: dict) -> None:
    with open(path, "wb") as f:
        torch.save(state, KillMidWrite(f) if armed("checkpoint.write") else f)
        f.flush()
        fsync_path(f)
    killpoint("checkpoint.written")


def buffer_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The persistent buffers (BatchNorm running statistics, ...): state that a forward pass
    changes, which an exact resume needs beside the weights."""
    keys = set(model.state_dict())
    return {n: b.detach().cpu().clone() for n, b in model.named_buffers() if n in keys}


def save_checkpoint(folder: Path, step: int, *, model, optimizer, stream, extra: dict | None = None,
                    keep: int = 2, buffers: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tidy_checkpoints(folder)
    final = folder / f"step-{step}"
    tmp = folder / f".tmp-step-{step}"
    tmp.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "model": trainable_state(model),
        "optimizer": optimizer.state_dict(),
        "data": stream.state_dict(),
        "rng": rng_state(),
        "extra": extra or {},
    }
    if buffers:  # opt-in: models with BatchNorm (vision); LLM stages keep weights only
        state["buffers"] = buffer_state(model)
    _write_state(tmp / "state.pt", state)
    fsync_path(tmp)
    commit_folder(tmp, final)
    killpoint("checkpoint.prune")
    prune_checkpoints(folder, keep)
    return final


def read_checkpoint(path: Path) -> dict:
    """The contents of ``path/state.pt``, checked: a user error naming the file when it is
    missing, unreadable (truncated, not a checkpoint) or lacks a part."""
    file = Path(path) / "state.pt"
    if not file.is_file():
        raise CheckpointError(f"{path} is not a checkpoint folder (no state.pt)")
    try:
        state = torch.load(file, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - torch raises several types for a damaged file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{file} cannot be read (truncated or not an lmlab checkpoint: "
                              f"{first})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{file} is not an lmlab checkpoint (holds a "
                              f"{type(state).__name__}, not a dict)")
    lacks = [k for k in KEYS if k not in state]
    if lacks:
        raise CheckpointError(f"{file} lacks {', '.join(lacks)} (an incomplete checkpoint; "
                              f"resume from another step or start again with resume=no)")
    return state


def save_sharded(folder: Path, step: int, *, model, optimizer, stream, extra: dict | None = None,
                 keep: int = 2) -> Path:
    """A checkpoint every rank writes together: trainable weights and optimizer state through
    ``torch.distributed.checkpoint`` (each rank writes its own shards to ``sharded/``, keyed by
    parameter name and global shape, so any number of ranks can read them back), plus rank 0's
    ``state.pt`` with the step, data position, RNG and the weights' names and shapes. Same
    temp-folder-then-rename protocol as ``save_checkpoint``."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    from lmlab.common import is_main
    from lmlab.train.distributed import barrier

    final, tmp = folder / f"step-{step}", folder / f".tmp-step-{step}"
    if is_main():
        folder.mkdir(parents=True, exist_ok=True)
        tidy_checkpoints(folder)
        tmp.mkdir(parents=True, exist_ok=True)
    barrier()
    msd, osd = get_state_dict(model, optimizer,
                              options=StateDictOptions(ignore_frozen_params=True))
    dcp.save({"model": msd, "optimizer": osd}, checkpoint_id=str(tmp / SHARDED))
    barrier()
    if is_main():
        _write_state(tmp / "state.pt", {
            "step": step, "model": SHARDED, "optimizer": SHARDED,
            "shapes": {n: list(p.shape) for n, p in model.named_parameters()
                       if p.requires_grad},
            "data": stream.state_dict(), "rng": rng_state(), "extra": extra or {},
        })
        fsync_path(tmp)
        commit_folder(tmp, final)
        prune_checkpoints(folder, keep)
    barrier()
    return final


def _load_sharded(path: Path, state: dict, model, optimizer) -> None:
    """Read a ``save_sharded`` checkpoint into ``model`` (sharded or plain, on any number of
    ranks: DCP reshards by name and global shape) after checking it fits this model."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_state_dict,
        set_state_dict,
    )

    shapes = {n: list(p.shape) for n, p in model.named_parameters() if p.requires_grad}
    saved = state.get("shapes", {})
    _check_names(path, set(saved), set(shapes))
    for n, s in saved.items():
        if shapes[n] != list(s):
            raise CheckpointError(f"checkpoint {path}: weight {n} has shape {tuple(s)}, the "
                                  f"model's is {tuple(shapes[n])}")
    opts = StateDictOptions(ignore_frozen_params=True)
    msd, osd = get_state_dict(model, optimizer, options=opts)
    sd = {"model": msd, "optimizer": osd}
    try:
        dcp.load(sd, checkpoint_id=str(Path(path) / SHARDED),
                 no_dist=not torch.distributed.is_initialized())  # one plain process
    except Exception as e:  # noqa: BLE001 - DCP wraps per-rank failures in several types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path}: its sharded weights cannot be read into "
                              f"this run ({first[:300]})") from None
    set_state_dict(model, optimizer, model_state_dict=sd["model"],
                   optim_state_dict=sd["optimizer"], options=opts)


def _check_names(path: Path, saved: set[str], have: set[str]) -> None:
    extra, absent = sorted(saved - have), sorted(have - saved)
    if extra or absent:
        which = (f"weights this model does not train: {extra[:3]}" if extra
                 else f"no weights for {absent[:3]}")
        raise CheckpointError(f"checkpoint {path} has {which}; it was written by a run with "
                              f"another model or method")


def load_checkpoint(path: Path, *, model, optimizer, stream) -> dict:
    state = read_checkpoint(path)
    from lmlab.train.fsdp import is_sharded

    if state["model"] == SHARDED:
        _load_sharded(path, state, model, optimizer)
        stream.load_state_dict(state["data"])
        set_rng_state(state["rng"])
        return state
    if is_sharded(model):
        raise CheckpointError(f"checkpoint {path} was written without strategy=fsdp (one file "
                              f"of full weights); resume it with strategy=ddp, or start a "
                              f"sharded run again with resume=no")
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    _check_names(path, set(state["model"]), set(params))
    with torch.no_grad():
        for n, t in state["model"].items():
            if params[n].shape != t.shape:
                raise CheckpointError(f"checkpoint {path}: weight {n} has shape "
                                      f"{tuple(t.shape)}, the model's is {tuple(params[n].shape)}")
            params[n].copy_(t)
        own = dict(model.named_buffers())
        for n, t in state.get("buffers", {}).items():
            if n not in own or own[n].shape != t.shape:
                raise CheckpointError(f"checkpoint {path}: buffer {n} does not fit this model; "
                                      f"it was written by a run with another model")
            own[n].copy_(t)
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path}: its optimizer state does not fit this run "
                              f"({e})") from None
    stream.load_state_dict(state["data"])
    set_rng_state(state["rng"])
    return state
