"""Classic reinforcement learning on gymnasium: the RL lab of ``lmlab agent``.

One short module per algorithm; each exposes

- ``ACTIONS``: the action spaces it handles ("discrete", "continuous"), ``TABULAR``: whether
  it needs a finite observation space, ``FAMILY``: which interaction loop drives it
  (``loops.py``: tabular | offpolicy | onpolicy), ``DEFAULTS``: its hyper-parameter defaults;
- ``make(obs_space, act_space, cfg, seed) -> agent``; the agent has ``act(obs, explore)``
  (numpy in, numpy out, batched over environments), ``state_dict`` / ``load_state_dict`` and
  its update, whose maths are pure functions tested by hand (``lmlab.losses.td``,
  ``lmlab.losses.policy``, ``lmlab.rl.advantages``: PPO's clip and GAE are the LLM side's).

``evaluation.py`` runs deterministic evaluation episodes and the across-seed statistics;
``envs.py`` checks environment ids, spaces and optional extras; ``stages/agent.py`` wires it.
"""

from __future__ import annotations

import importlib

# algo name -> module
ALGOS = {"qlearning": "tabular", "sarsa": "tabular", "dqn": "dqn", "vpg": "vpg", "a2c": "a2c",
         "ppo": "ppo", "ddpg": "ddpg", "td3": "td3", "sac": "sac"}
POLICY_BASED = ("vpg", "a2c", "ppo", "ddpg", "td3", "sac")  # learn a policy network


def algo_module(name: str):
    return importlib.import_module(f"{__name__}.{ALGOS[name]}")
