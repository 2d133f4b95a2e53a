"""TD3 (Fujimoto et al. 2018): DDPG (ddpg.py) with its three fixes switched on -

1. twin critics, the target is the smaller: y = r + gamma (1 - d) min(Q1', Q2')(s', a');
2. target policy smoothing: a' = clip(mu'(s') + clip(N(0, ``target_noise``), +-``noise_clip``));
3. a delayed actor: the actor and the targets move every ``policy_delay`` critic updates.
"""

from __future__ import annotations

from lmlab.agents.ddpg import DeterministicAgent

ACTIONS = ("continuous",)
TABULAR = False
FAMILY = "offpolicy"
DEFAULTS = {"lr": 1e-3, "gamma": 0.99, "batch_size": 256, "buffer_size": 1_000_000,
            "learning_starts": 100, "train_freq": 1, "gradient_steps": 1, "tau": 0.005,
            "action_noise": 0.1, "policy_delay": 2, "target_noise": 0.2, "noise_clip": 0.5,
            "hidden": [256, 256], "n_envs": 1}


def make(obs_space, act_space, cfg, seed: int) -> DeterministicAgent:
    return DeterministicAgent(obs_space, act_space, cfg, seed, critics=2,
                              policy_delay=cfg.policy_delay, target_noise=cfg.target_noise,
                              noise_clip=cfg.noise_clip)
