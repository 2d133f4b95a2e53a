"""Temporal-difference targets and the SAC temperature loss, as pure functions (lmlab.agents).

- ``td_target``: r + gamma (1 - terminated) V(s'); Q-learning takes V(s') = max_a Q(s', a),
  SARSA V(s') = Q(s', a'), DQN max_a Q_target(s', a) (Mnih et al. 2015).
- ``double_q_target``: double DQN (van Hasselt et al. 2016): the online network picks
  a* = argmax_a Q(s', a), the target network values it: r + gamma (1 - d) Q_target(s', a*).
- ``clipped_double_q``: TD3/SAC's min of two target critics (Fujimoto et al. 2018), minus
  alpha log pi(a'|s') for SAC (Haarnoja et al. 2018).
- ``sac_alpha_loss``: -log(alpha) (log pi(a|s) + target entropy), averaged; its gradient
  raises alpha when the policy's entropy falls below the target and lowers it above.

Only "terminated" (the MDP ended) stops the bootstrap; a time-limit truncation is not an end
of the task, so its next state is still valued. Works on numpy arrays and torch tensors alike.
"""

from __future__ import annotations

import torch


def td_target(reward, next_value, terminated, gamma: float):
    """r + gamma * (1 - terminated) * V(s'), elementwise."""
    return reward + gamma * (1.0 - terminated) * next_value


def double_q_target(reward: torch.Tensor, q_next_online: torch.Tensor,
                    q_next_target: torch.Tensor, terminated: torch.Tensor,
                    gamma: float) -> torch.Tensor:
    """(B,), (B, A), (B, A), (B,) -> (B,): the target network's value of the online argmax."""
    best = q_next_online.argmax(dim=1, keepdim=True)  # (B, 1)
    return td_target(reward, q_next_target.gather(1, best).squeeze(1), terminated, gamma)


def clipped_double_q(q1: torch.Tensor, q2: torch.Tensor, next_logp: torch.Tensor | None = None,
                     alpha: float | torch.Tensor = 0.0) -> torch.Tensor:
    """min(Q1', Q2') - alpha * log pi(a'|s'): the soft value of s' (alpha 0: TD3's value)."""
    v = torch.min(q1, q2)
    return v if next_logp is None else v - alpha * next_logp


def sac_alpha_loss(log_alpha: torch.Tensor, logp: torch.Tensor,
                   target_entropy: float) -> torch.Tensor:
    """mean(-log_alpha * (log pi(a|s) + target_entropy)), log-probs detached."""
    return -(log_alpha * (logp.detach() + target_entropy)).mean()
