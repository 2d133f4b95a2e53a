"""An exponential moving average of a model's weights (and BatchNorm statistics), evaluated in
place of the last weights (Polyak averaging; the "model EMA" of image-classification recipes).

``ema_update`` and ``ema_decay`` are the pure parts. ``WeightEMA`` holds the averages in fp32,
updates them after every optimizer step (a step post-hook: the shared loop is unchanged) and
travels inside the optimizer's ``state_dict`` under ``"ema"``, so a checkpoint holds it and
``resume=auto`` continues exactly.
"""

from __future__ import annotations

import contextlib

import torch


def ema_decay(updates: int, decay: float) -> float:
    """The decay of update number ``updates`` (1, 2, ...): ``min(decay, (1 + t) / (10 + t))``
    with t = updates - 1, so the first updates follow the weights closely instead of keeping
    the random initialisation for ~1 / (1 - decay) steps."""
    t = updates - 1
    return min(decay, (1 + t) / (10 + t))


@torch.no_grad()
def ema_update(avg: list[torch.Tensor], new: list[torch.Tensor], decay: float) -> None:
    """In place: ``avg <- decay * avg + (1 - decay) * new`` for each pair (``avg`` fp32)."""
    torch._foreach_lerp_(avg, [t.detach().to(a.dtype) for a, t in zip(avg, new)], 1.0 - decay)


class WeightEMA:
    """The averaged copy of ``model``'s floating-point parameters and buffers (BN running mean
    and variance; integer buffers such as the batch count are left to the model)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        self._live = {n: t for n, t in model.state_dict(keep_vars=True).items()
                      if t.is_floating_point()}
        self.avg = {n: t.detach().float().clone() for n, t in self._live.items()}

    def update(self) -> None:
        self.updates += 1
        names = list(self.avg)
        ema_update([self.avg[n] for n in names], [self._live[n] for n in names],
                   ema_decay(self.updates, self.decay))

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates,
                "avg": {n: t.detach().cpu().clone() for n, t in self.avg.items()}}

    def load_state_dict(self, state: dict) -> None:
        if set(state["avg"]) != set(self.avg):
            raise ValueError("the weight average does not fit this model")
        self.updates = int(state["updates"])
        with torch.no_grad():
            for n, t in state["avg"].items():
                self.avg[n].copy_(t)

    def attach(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Update after each ``optimizer.step()``; save and load with the optimizer's state."""
        def saved(_opt, sd):
            sd["ema"] = self.state_dict()
            return sd

        def loading(_opt, sd):
            sd = dict(sd)
            if "ema" not in sd:
                raise KeyError("ema (the checkpoint was written without ema)")
            self.load_state_dict(sd.pop("ema"))
            return sd

        optimizer.register_step_post_hook(lambda *_: self.update())
        optimizer.register_state_dict_post_hook(saved)
        optimizer.register_load_state_dict_pre_hook(loading)
        return optimizer

    @torch.no_grad()
    def copy_to(self) -> None:
        """Write the averages into the model (for good: its final weights)."""
        for n, t in self._live.items():
            t.copy_(self.avg[n])

    @contextlib.contextmanager
    def swapped(self):
        """The model holds the averages inside the block and its own weights again after."""
        saved = {n: t.detach().clone() for n, t in self._live.items()}
        self.copy_to()
        try:
            yield
        finally:
            with torch.no_grad():
                for n, t in self._live.items():
                    t.copy_(saved[n])
