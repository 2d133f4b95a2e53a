"""Environments: checked ids, vector envs, and the checks that give users a clear error.

``make_vec`` builds a ``gymnasium.vector.SyncVectorEnv`` (in-process: on 2 cores, subprocess
envs cost more than CartPole's step) with SAME_STEP autoreset, so a step that ends an episode
returns the reset observation and puts the real last one in ``info["final_obs"]`` (what a
replay buffer and a time-limit bootstrap need). Env factories are ``functools.partial`` so a
vector env pickles whole, which is how checkpoints resume mid-episode exactly.
"""

from __future__ import annotations

import difflib
import functools

import numpy as np

from lmlab.errors import UserError

# where a registered env's code lives -> the gymnasium extra that installs its dependency
EXTRAS = {"box2d": "box2d", "mujoco": "mujoco", "classic_control": "classic-control",
          "toy_text": "toy-text"}
GRID_ID = "GridWorld-v0"
# episodes of an env registered without a time limit (CliffWalking) end here: a greedy policy
# that walks in circles would otherwise never finish an evaluation episode
DEFAULT_LIMIT = 1000


def gymnasium():
    """The gymnasium module, or a UserError naming the extra that installs it."""
    try:
        import gymnasium as gym
    except ImportError:
        raise UserError('lmlab agent needs gymnasium: pip install "lmlab[agent]" (or pip '
                        'install "gymnasium[classic-control]")') from None
    return gym


def _register_grid() -> None:
    gym = gymnasium()
    if GRID_ID not in gym.envs.registry:
        gym.register(GRID_ID, entry_point="lmlab.agents.gridenv:GridWorld",
                     max_episode_steps=100)


def env_spec(env_id: str):
    """The registered spec of ``env_id``; an unknown id is a UserError listing close matches."""
    gym = gymnasium()
    _register_grid()
    if env_id in gym.envs.registry:
        return gym.spec(env_id)
    ids = list(gym.envs.registry)
    close = difflib.get_close_matches(env_id, ids, n=5, cutoff=0.5)
    close += [i for i in ids if env_id.lower() in i.lower() and i not in close][:5 - len(close)]
    hint = f"; close matches: {', '.join(close)}" if close else \
        "; e.g. CartPole-v1, Pendulum-v1, FrozenLake-v1, Taxi-v4, GridWorld-v0"
    raise UserError(f"env: unknown environment {env_id!r}{hint}")


def extra_of(spec) -> str | None:
    """The gymnasium extra an env needs (box2d, mujoco, ...), from where its code lives."""
    entry = spec.entry_point if isinstance(spec.entry_point, str) else ""
    for part, extra in EXTRAS.items():
        if f".{part}" in entry:
            return extra
    return None


def headless_rendering() -> None:
    """Without a display, render offscreen: pygame (classic control) to a dummy video driver,
    MuJoCo through EGL (its default, GLFW, needs a window). Set before MuJoCo is imported;
    variables the user set win."""
    import os

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")


def make_env(env_id: str, kwargs: dict | None = None, render_mode: str | None = None):
    """One env; a missing optional dependency is a UserError naming the pip command."""
    gym = gymnasium()
    spec = env_spec(env_id)
    kw = _with_limit(spec, kwargs)
    if render_mode:
        kw["render_mode"] = render_mode
    try:
        return gym.make(env_id, **kw)
    except gym.error.DependencyNotInstalled as e:
        extra = extra_of(spec) or "all"
        raise UserError(f"env {env_id} needs the gymnasium '{extra}' extra, which is not "
                        f"installed: pip install \"gymnasium[{extra}]\" (or "
                        f"pip install \"lmlab[agent-{extra}]\"); gymnasium said: {e}") from None
    except TypeError as e:  # an env_kwargs key the env does not take
        raise UserError(f"env_kwargs for {env_id}: {e}") from None


def _with_limit(spec, kwargs: dict | None) -> dict:
    kw = dict(kwargs or {})
    if spec.max_episode_steps is None:
        kw.setdefault("max_episode_steps", DEFAULT_LIMIT)
    return kw


def make_vec(env_id: str, n: int, kwargs: dict | None = None):
    import gymnasium as gym

    make_env(env_id, kwargs).close()  # the checks above, once, with their clear errors
    kw = _with_limit(env_spec(env_id), kwargs)
    fns = [functools.partial(gym.make, env_id, **kw) for _ in range(n)]
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def action_kind(space) -> str:
    import gymnasium as gym

    if isinstance(space, gym.spaces.Discrete):
        return "discrete"
    if isinstance(space, gym.spaces.Box):
        return "continuous"
    return type(space).__name__


def check_spaces(algo: str, needs: tuple[str, ...], tabular: bool, env_id: str, env) -> None:
    """A UserError when ``algo`` cannot act in ``env`` (discrete vs continuous actions, a
    tabular method on continuous observations), naming the algorithms that can."""
    import gymnasium as gym

    from lmlab.agents import ALGOS, algo_module

    kind = action_kind(env.action_space)
    if kind not in needs:
        fits = [a for a in ALGOS if kind in algo_module(a).ACTIONS
                and (not algo_module(a).TABULAR
                     or isinstance(env.observation_space, gym.spaces.Discrete))]
        raise UserError(f"algo={algo} needs {' or '.join(needs)} actions, but {env_id} has "
                        f"{kind} actions ({env.action_space}); algorithms for it: "
                        f"{', '.join(fits) or 'none'}")
    if tabular and not isinstance(env.observation_space, gym.spaces.Discrete):
        raise UserError(f"algo={algo} is tabular: it needs a finite (Discrete) observation "
                        f"space, but {env_id} observes {env.observation_space}; use dqn or ppo "
                        f"(or a toy-text env: FrozenLake-v1, Taxi-v4, CliffWalking-v1, "
                        f"{GRID_ID})")


def sim_state(envs) -> list:
    """What pickling loses of each (vector) env: a MuJoCo env pickles as its constructor
    arguments (a fresh simulation on load), so its full integration state (time, qpos, qvel,
    controls, the solver's warm start) and its generator are kept here; None for other envs,
    which pickle whole."""
    out = []
    for e in getattr(envs, "envs", [envs]):
        u = e.unwrapped
        if not (hasattr(u, "model") and hasattr(u, "data")):
            out.append(None)
            continue
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        state = np.empty(mujoco.mj_stateSize(u.model, spec))
        mujoco.mj_getState(u.model, u.data, state, spec)
        out.append({"sim": state, "rng": u.np_random.bit_generator.state})
    return out


def load_sim_state(envs, states: list) -> None:
    for e, st in zip(getattr(envs, "envs", [envs]), states):
        if st is None:
            continue
        import mujoco

        u = e.unwrapped
        mujoco.mj_setState(u.model, u.data, st["sim"], mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(u.model, u.data)
        u.np_random.bit_generator.state = st["rng"]
