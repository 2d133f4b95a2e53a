"""PPO's critic by composition: a scalar ``nn.Linear(hidden, 1)`` read at every position of the
policy's own final hidden states (a shared body, as TRL's old ``AutoModelForCausalLMWithValueHead``
did), so one forward gives both the next-token logits and the values. No model subclass: the
policy stays a standard transformers (or peft) model, and ``ActorCritic`` only holds the two so
that one optimizer, one checkpoint and ``trainable_state`` cover both.

Legend: N rows, R positions, H hidden size.
"""

from __future__ import annotations

import torch
from torch import nn


class ValueHead(nn.Module):
    """V(h) = w . h + b per position: (N, R, H) -> (N, R), in fp32. Zero-initialised, so the
    first values are 0 and the first advantages are the plain (discounted) rewards."""

    def __init__(self, hidden: int):
        super().__init__()
        self.linear = nn.Linear(hidden, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h.float()).squeeze(-1)


class ActorCritic(nn.Module):
    """The policy (``actor``) and an optional value head (``critic``); parameter names are
    ``actor.*`` and ``critic.*``."""

    def __init__(self, actor: nn.Module, critic: ValueHead | None = None):
        super().__init__()
        self.actor, self.critic = actor, critic


def add_value_head(policy: nn.Module) -> ActorCritic:
    p = next(policy.parameters())
    head = ValueHead(policy.config.hidden_size).to(device=p.device)
    return ActorCritic(policy, head)
