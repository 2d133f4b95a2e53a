"""Tabular Q-learning and SARSA on grid worlds: convergence to the known optimal policy and
values, the printed policy map, the grid world's rules and layout checks."""

from __future__ import annotations

import numpy as np
import pytest

from lmlab.agents.gridenv import GridWorld
from lmlab.agents.gridworld import parse_layout, policy_map
from lmlab.agents.tabular import (
    linear_epsilon,
    q_learning_target,
    sarsa_target,
    td_update,
)
from lmlab.config import load_config
from lmlab.stages import agent as stage

# a 4x4 maze with exactly one shortest path: right, down, right, down, right, down
CORRIDOR = "S.##/#..#/##../###G"
OPTIMAL = "→ ↓ # #\n# → ↓ #\n# # → ↓\n# # # G"
PATH = {0: 5, 1: 4, 5: 3, 6: 2, 10: 1, 11: 0}  # state -> steps after the next one to G


def test_updates_by_hand():
    q = np.zeros((3, 2))
    q[2] = [1.0, 3.0]
    assert q_learning_target(q, 0.5, 2, False, 0.9) == pytest.approx(0.5 + 0.9 * 3.0)
    assert sarsa_target(q, 0.5, 2, 0, False, 0.9) == pytest.approx(0.5 + 0.9 * 1.0)
    assert q_learning_target(q, 0.5, 2, True, 0.9) == 0.5
    err = td_update(q, 0, 1, 2.0, alpha=0.25)
    assert err == 2.0 and q[0, 1] == 0.5
    assert linear_epsilon(0, 100, 0.5, 0.1) == 1.0
    assert linear_epsilon(25, 100, 0.5, 0.1) == pytest.approx(0.55)
    assert linear_epsilon(90, 100, 0.5, 0.1) == 0.1


def test_gridworld_rules():
    env = GridWorld(CORRIDOR)
    s, _ = env.reset(seed=0)
    assert s == 0
    assert env.step(3)[0] == 0  # up: off the grid, stays
    assert env.step(1)[0] == 0  # down: a wall, stays
    assert env.step(2)[:3] == (1, 0.0, False)
    for a in (1, 2, 1, 2):
        env.step(a)
    s, r, term, trunc, _ = env.step(1)
    assert (s, r, term, trunc) == (15, 1.0, True, False)
    assert env.render().shape == (4 * 32, 4 * 32, 3)


@pytest.mark.parametrize("layout, says", [("S..", "goal"), ("S.G/..", "same"),
                                         ("S.G/.xG", "unknown cells 'x'"), ("..G", "start")])
def test_bad_layouts(layout, says):
    with pytest.raises(ValueError, match=says):
        parse_layout(layout)


def test_q_learning_converges_to_the_optimal_policy(tmp_path):
    """Deterministic 4x4 maze, alpha 1: Q* is reached exactly; V*(s) = gamma^(d(s) - 1)."""
    cfg = load_config(stage.Config, None, [
        "algo=qlearning", f"grid={CORRIDOR}", "lr=1.0", "gamma=0.9", "max_steps=3000",
        "exploration_fraction=0.8", "epsilon_end=0.1", "frames=false", "progress=false",
        f"output_dir={tmp_path / 'run'}"])
    summary = stage.run(cfg)
    assert summary["policy_map"].splitlines()[0].startswith(OPTIMAL.splitlines()[0])
    arrows = "\n".join(line[:7] for line in summary["policy_map"].splitlines())
    assert arrows == OPTIMAL
    q = np.load(tmp_path / "run/final/seed-0/q.npy")
    for s, d in PATH.items():
        assert q[s].max() == pytest.approx(0.9 ** d, abs=1e-9)
    assert summary["eval_return_mean"] == 1.0
    assert (tmp_path / "run/policy.txt").read_text().startswith("→ ↓ # #")


def test_sarsa_learns_frozen_lake_without_slip(tmp_path):
    cfg = load_config(stage.Config, None, [
        "algo=sarsa", "env=FrozenLake-v1", "env_kwargs.is_slippery=false", "lr=0.5",
        "max_steps=15000", "exploration_fraction=0.8", "epsilon_end=0.0", "frames=false", "progress=false",
        f"output_dir={tmp_path / 'run'}"])
    summary = stage.run(cfg)
    assert summary["eval_return_mean"] == 1.0  # reaches the goal every evaluation episode
    assert summary["kind"] == "value-based"


def test_policy_map_marks_cells():
    q = np.zeros((4, 4))
    q[0, 2] = 1.0
    text = policy_map(["S.", "#G"], q)
    assert text.splitlines()[0].startswith("→ ←") and text.splitlines()[1].startswith("# G")


def test_envs_without_a_time_limit_get_one_and_taxi_has_no_grid_map():
    from lmlab.agents.envs import DEFAULT_LIMIT, make_env
    from lmlab.agents.gridworld import grid_desc

    cliff = make_env("CliffWalking-v1")
    assert cliff.spec.max_episode_steps == DEFAULT_LIMIT  # greedy evaluation always ends
    assert make_env("CartPole-v1").spec.max_episode_steps == 500  # registered limits stay
    assert grid_desc(make_env("Taxi-v4")) is None  # its map's cells are not its states
    assert grid_desc(make_env("FrozenLake-v1")) == ["SFFF", "FHFH", "FFFH", "HFFG"]
