"""Bad-input corpus, `lmlab agent`: an unknown environment (close matches listed), an algorithm
whose action space does not fit the env (both ways), a tabular method on continuous
observations, a missing optional extra (box2d, mujoco), a bad grid layout. Each: a non-zero
exit, no traceback, a message naming the fix, and no run folder written."""

from __future__ import annotations

import pytest

OUT = "progress=false"


def test_unknown_env_lists_close_matches(fail, tmp_path):
    out = tmp_path / "run"
    assert fail("agent", "ppo", "env=CartPol-v1", f"output_dir={out}", OUT).says(
        "unknown environment 'CartPol-v1'", "close matches", "CartPole-v1")
    assert not out.exists()


def test_unknown_env_without_close_matches_gives_examples(fail, tmp_path):
    assert fail("agent", "dqn", "env=Zzzzqqq-v9", f"output_dir={tmp_path / 'r'}").says(
        "unknown environment 'Zzzzqqq-v9'", "CartPole-v1", "Pendulum-v1")


def test_discrete_algorithm_on_a_continuous_env(fail, tmp_path):
    out = tmp_path / "run"
    assert fail("agent", "dqn", "env=Pendulum-v1", f"output_dir={out}").says(
        "algo=dqn needs discrete actions", "Pendulum-v1 has continuous actions", "sac", "td3",
        "ddpg")
    assert not out.exists()


def test_continuous_algorithm_on_a_discrete_env(fail, tmp_path):
    assert fail("agent", "sac", "env=CartPole-v1", f"output_dir={tmp_path / 'r'}").says(
        "algo=sac needs continuous actions", "CartPole-v1 has discrete actions", "dqn", "ppo")


def test_tabular_algorithm_on_continuous_observations(fail, tmp_path):
    assert fail("agent", "qlearning", "env=CartPole-v1", f"output_dir={tmp_path / 'r'}").says(
        "algo=qlearning is tabular", "Discrete", "use dqn or ppo")


@pytest.mark.parametrize("env, extra", [("LunarLander-v3", "box2d"),
                                        ("HalfCheetah-v5", "mujoco")])
def test_missing_optional_extra_names_the_pip_command(fail, tmp_path, env, extra):
    pytest.importorskip("gymnasium")
    try:  # the case exists only where the extra is missing
        __import__({"box2d": "Box2D", "mujoco": "mujoco"}[extra])
        pytest.skip(f"{extra} is installed here")
    except ImportError:
        pass
    algo = "ppo" if extra == "box2d" else "sac"
    out = tmp_path / "run"
    assert fail("agent", algo, f"env={env}", f"output_dir={out}").says(
        f"env {env} needs the gymnasium '{extra}' extra", f'pip install "gymnasium[{extra}]"')
    assert not out.exists()


def test_bad_grid_layout(fail, tmp_path):
    assert fail("agent", "qlearning", "grid=S../.x.", f"output_dir={tmp_path / 'r'}").says(
        "grid", "unknown cells 'x'", "needs at least one goal G")


def test_env_kwargs_the_env_does_not_take(fail, tmp_path):
    assert fail("agent", "ppo", "env=CartPole-v1", "env_kwargs.colour=red",
                f"output_dir={tmp_path / 'r'}").says("env_kwargs for CartPole-v1", "colour")


def test_unknown_algorithm(fail):
    assert fail("agent", "algo=dqnn").says("algo", "dqn")
