"""`lmlab agent`: classic reinforcement learning on gymnasium (the RL lab).

Setup (algorithm, environment and their checks, the run folder), then per training seed: the
algorithm's interaction loop (``lmlab.agents.loops``) with training curves over environment
steps, deterministic evaluation episodes apart from training, checkpoints; then each seed's
policy in ``final/``, a frame strip of the trained agent and the return's mean +- 95% CI over
seeds in ``summary.json``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmlab.agents import ALGOS
from lmlab.agents.gridworld import DEFAULT_LAYOUT
from lmlab.config import RunConfig, opt

HELP = "agent: classic RL on gymnasium (Q-learning, SARSA, DQN, VPG, A2C, PPO, DDPG, TD3, SAC)"
POSITIONAL = "algo"  # `lmlab agent ppo env=CartPole-v1`
DEFAULT_ENV = {"tabular": "GridWorld-v0", "discrete": "CartPole-v1", "continuous": "Pendulum-v1"}


@dataclass
class Config(RunConfig):
    UNUSED = ("model", "data")  # no language model, no data set: an environment

    output_dir: str = opt("", "run folder (default: runs/agent-<algo>-<env>)")
    algo: str = opt("ppo", "algorithm", choices=tuple(ALGOS))
    env: str = opt("", "gymnasium env id (default: GridWorld-v0 for tabular algorithms, "
                       "CartPole-v1 for discrete, Pendulum-v1 for continuous ones)")
    env_kwargs: dict[str, Any] = opt(
        {}, "keyword arguments of the env (values read as YAML), e.g. "
           "env_kwargs.is_slippery=false")
    grid: str = opt(DEFAULT_LAYOUT, "GridWorld-v0 layout, rows split by '/': S start, G goal, "
                                    "H hole, # wall, . floor")
    max_steps: int = opt(50_000, "environment steps per seed (summed over n_envs)", min=1)
    seeds: int = opt(1, "training runs with seeds seed, seed+1, ...: the return's mean and 95% "
                        "CI over them", min=1)
    n_envs: int | None = opt(None, "environments stepped together (default: the algorithm's)",
                             min=1)
    hidden: list[int] | None = opt(None, "hidden layer widths (default: the algorithm's)")
    lr: float | None = opt(None, "learning rate (tabular: the step size alpha)", min=0.0,
                           min_exclusive=True)
    gamma: float | None = opt(None, "discount", min=0.0, max=1.0)
    batch_size: int | None = opt(None, "minibatch (PPO) or replay sample size", min=1)
    schedule: str = opt("constant", "lr (and PPO clip range) over training",
                        choices=("constant", "linear"))
    # on-policy (vpg, a2c, ppo)
    n_steps: int | None = opt(None, "rollout length per env before each update", min=1)
    n_epochs: int | None = opt(None, "PPO: passes over each rollout; VPG: value steps", min=1)
    gae_lambda: float | None = opt(None, "GAE lambda (1: Monte Carlo returns)", min=0.0, max=1.0)
    clip: float | None = opt(None, "PPO clip range", min=0.0, min_exclusive=True)
    ent_coef: float | None = opt(None, "entropy bonus weight", min=0.0)
    vf_coef: float | None = opt(None, "value loss weight (A2C, PPO)", min=0.0)
    vf_lr: float | None = opt(None, "VPG: value baseline learning rate", min=0.0,
                              min_exclusive=True)
    max_grad_norm: float | None = opt(None, "gradient-norm clip", min=0.0, min_exclusive=True)
    # off-policy (dqn, ddpg, td3, sac)
    buffer_size: int | None = opt(None, "replay buffer capacity (transitions)", min=1)
    learning_starts: int | None = opt(None, "random-action steps before learning", min=0)
    train_freq: int | None = opt(None, "vector steps between training rounds", min=1)
    gradient_steps: int | None = opt(None, "updates per training round", min=1)
    target_update: int | None = opt(None, "DQN: env steps between target-network syncs", min=1)
    tau: float | None = opt(None, "target network Polyak rate (1: copy)", min=0.0, max=1.0)
    double: bool = opt(True, "DQN: double DQN target")
    loss: str = opt("huber", "DQN: TD loss (huber: smooth L1, delta 1; mse: squared error)",
                    choices=("huber", "mse"))
    epsilon_draw: str = opt("env", "DQN: epsilon-greedy coin per env, or one per vector step "
                                   "(step: Stable-Baselines3's)", choices=("env", "step"))
    exploration_fraction: float | None = opt(None, "epsilon decays over this fraction of "
                                                   "steps (tabular, DQN)", min=0.0, max=1.0)
    epsilon_end: float | None = opt(None, "final epsilon (tabular, DQN)", min=0.0, max=1.0)
    action_noise: float | None = opt(None, "DDPG/TD3: Gaussian exploration noise std (actions "
                                           "in [-1, 1])", min=0.0)
    policy_delay: int | None = opt(None, "TD3: critic updates per actor update", min=1)
    target_noise: float | None = opt(None, "TD3: target policy smoothing noise std", min=0.0)
    noise_clip: float | None = opt(None, "TD3: clip of the smoothing noise", min=0.0)
    alpha: float | None = opt(None, "SAC: fixed entropy temperature (default: learned, "
                                    "target entropy -dim(A))", min=0.0, min_exclusive=True)
    # evaluation, logging, checkpoints
    eval_every: int = opt(0, "env steps between evaluations (0: max_steps / 10)", min=0)
    eval_episodes: int = opt(10, "deterministic evaluation episodes each time", min=1)
    keep_best: bool = opt(False, "keep each seed's policy of its best evaluation (the latest of "
                                 "ties) in final/ and score it again on held-out episodes")
    log_every: int = opt(1000, "env steps between training-metric rows", min=1)
    save_every: int = opt(0, "env steps between checkpoints (0: at each evaluation)", min=0)
    keep_checkpoints: int = opt(1, "checkpoints kept", min=1)
    frames: bool = opt(True, "render a frame strip of the trained agent (frames.png)")
    threads: int = opt(0, "torch threads (0: 1 for nets up to 64 wide, else up to 2)", min=0)
    progress: bool = opt(True, "show a progress bar")

    def validate(self) -> list[str]:
        from lmlab.agents import algo_module

        problems = []
        mod = algo_module(self.algo) if self.algo in ALGOS else None
        if mod and mod.TABULAR and (self.n_envs or 1) != 1:
            problems.append("n_envs: tabular algorithms step one environment")
        if self.hidden is not None and (not self.hidden or min(self.hidden) < 1):
            problems.append("hidden: give positive layer widths, e.g. hidden=64,64")
        if self.env in ("", "GridWorld-v0"):
            from lmlab.agents.gridworld import parse_layout

            try:
                parse_layout(self.grid)
            except ValueError as e:
                problems.append(f"grid: {e}")
        return problems


# --- setup ------------------------------------------------------------------------------------


def resolve(cfg: Config) -> None:
    """Fill every unset hyper-parameter from the algorithm's defaults (config.yaml records the
    values used) and check the environment against the algorithm, before anything is written."""
    from lmlab.agents import algo_module
    from lmlab.agents.envs import check_spaces, make_env

    mod = algo_module(cfg.algo)
    if not cfg.env:
        cfg.env = DEFAULT_ENV["tabular" if mod.TABULAR else mod.ACTIONS[0]]
    for key, value in mod.DEFAULTS.items():
        if getattr(cfg, key) is None:
            setattr(cfg, key, list(value) if isinstance(value, list) else value)
    env = make_env(cfg.env, env_kwargs(cfg))
    check_spaces(cfg.algo, mod.ACTIONS, mod.TABULAR, cfg.env, env)
    env.close()
    if not cfg.output_dir:
        cfg.output_dir = f"runs/agent-{cfg.algo}-{cfg.env.replace('/', '-')}"
    if not cfg.eval_every:
        cfg.eval_every = max(1, cfg.max_steps // 10)


def env_kwargs(cfg: Config) -> dict:
    """``env_kwargs`` with values given on the command line read as YAML (false, 8, 0.5)."""
    import yaml

    kw = {k: yaml.safe_load(v) if isinstance(v, str) else v for k, v in cfg.env_kwargs.items()}
    if cfg.env == "GridWorld-v0":
        kw.setdefault("layout", cfg.grid)
    return kw


def set_threads(cfg: Config) -> int:
    import os

    import torch

    n = cfg.threads or (1 if max(cfg.hidden or [0]) <= 64 else min(2, os.cpu_count() or 1))
    torch.set_num_threads(n)
    return n


def build(cfg: Config, seed: int):
    """The algorithm's agent and its loop for one training seed."""
    import torch

    from lmlab.agents import algo_module
    from lmlab.agents.envs import make_env, make_vec
    from lmlab.agents.loops import make_loop

    mod = algo_module(cfg.algo)
    torch.manual_seed(seed)
    envs = make_env(cfg.env, env_kwargs(cfg)) if mod.TABULAR else \
        make_vec(cfg.env, cfg.n_envs, env_kwargs(cfg))
    obs_space = envs.observation_space if mod.TABULAR else envs.single_observation_space
    act_space = envs.action_space if mod.TABULAR else envs.single_action_space
    agent = mod.make(obs_space, act_space, cfg, seed)
    return make_loop(mod.FAMILY, agent, envs, cfg, seed)


# --- checkpoints ------------------------------------------------------------------------------


def save_state(run_, step: int, state: dict, keep: int) -> None:
    """``checkpoints/step-N/state.pt`` (N: env steps over all seeds so far), written to a temp
    folder, flushed and renamed (lmlab.train.checkpoint's contract and keys)."""
    import torch

    from lmlab.runs import (
        commit_folder,
        fsync_path,
        prune_checkpoints,
        tidy_checkpoints,
    )
    from lmlab.train.checkpoint import rng_state

    folder = run_.checkpoints
    folder.mkdir(parents=True, exist_ok=True)
    tidy_checkpoints(folder)
    tmp = folder / f".tmp-step-{step}"
    tmp.mkdir()
    with open(tmp / "state.pt", "wb") as f:
        torch.save({"step": step, "model": {}, "optimizer": {}, "data": state,
                    "rng": rng_state()}, f)
        f.flush()
        fsync_path(f)
    commit_folder(tmp, folder / f"step-{step}")
    prune_checkpoints(folder, keep)


# --- one seed ---------------------------------------------------------------------------------


class SeedRun:
    """Trains one seed: advance the loop; log, evaluate and checkpoint at their intervals."""

    def __init__(self, cfg: Config, run_, index: int, done: list[dict], bar):
        from lmlab.agents.envs import make_env

        self.cfg, self.run, self.index, self.done, self.bar = cfg, run_, index, done, bar
        self.seed = cfg.seed + index
        self.loop = build(cfg, self.seed)
        self.eval_env = make_env(cfg.env, env_kwargs(cfg))
        self.spec_threshold = self.eval_env.spec.reward_threshold if self.eval_env.spec else None
        self.evals: list[dict] = []
        self.seconds = 0.0
        self.solved: dict | None = None
        self.best: dict | None = None  # keep_best: the best evaluation and its policy

    @property
    def offset(self) -> int:
        return self.index * self.cfg.max_steps

    def evaluate(self) -> dict:
        from lmlab.agents.evaluation import EVAL_SEED, run_episodes

        returns = run_episodes(self.loop.agent, self.eval_env, self.cfg.eval_episodes,
                               EVAL_SEED)
        import numpy as np

        row = {"env_step": self.loop.step, "return": float(np.mean(returns)),
               "return_std": float(np.std(returns))}
        self.evals.append(row)
        if self.cfg.keep_best and (self.best is None or row["return"] >= self.best["return"]):
            import copy

            self.best = {"env_step": self.loop.step, "return": row["return"],
                         "policy": copy.deepcopy(self.loop.agent.policy_state())}
        if self.solved is None and self.spec_threshold is not None \
                and row["return"] >= self.spec_threshold:
            self.solved = {"env_step": self.loop.step, "seconds": round(self.seconds, 2)}
        return row

    def train(self, stop_at: int | None) -> bool:
        """Run to ``max_steps``; False when stopped early at global step ``stop_at``."""
        cfg, loop = self.cfg, self.loop
        nxt = {k: _next(loop.step, every) for k, every in
               (("log", cfg.log_every), ("eval", cfg.eval_every),
                ("save", cfg.save_every or cfg.eval_every))}
        t_log, s_log = time.perf_counter(), loop.step
        while loop.step < cfg.max_steps:
            t0, before = time.perf_counter(), loop.step
            loop.advance()
            self.seconds += time.perf_counter() - t0
            if self.bar is not None:
                self.bar.update(min(loop.step, cfg.max_steps) - before)
            last = loop.step >= cfg.max_steps
            row = {}
            if loop.step >= nxt["log"] or last:
                row.update(loop.drain())
                now = time.perf_counter()
                row["train/steps_per_s"] = (loop.step - s_log) / max(now - t_log, 1e-9)
                t_log, s_log = now, loop.step
                nxt["log"] = _next(loop.step, cfg.log_every)
            if loop.step >= nxt["eval"] or last:
                ev = self.evaluate()
                row.update({"eval/return": ev["return"], "eval/return_std": ev["return_std"]})
                nxt["eval"] = _next(loop.step, cfg.eval_every)
                if self.bar is not None:
                    self.bar.set_postfix(seed=self.seed, eval_return=f"{ev['return']:.1f}")
            if row:
                self.run.log_metrics({"step": self.offset + loop.step, "env_step": loop.step,
                                      "seed": self.seed, **row})
            if loop.step >= nxt["save"] and not last:
                save_state(self.run, self.offset + loop.step, self.state(), cfg.keep_checkpoints)
                nxt["save"] = _next(loop.step, cfg.save_every or cfg.eval_every)
                if stop_at is not None and self.offset + loop.step >= stop_at:
                    return False
        return True

    def state(self) -> dict:
        return {"done": self.done, "index": self.index, "loop": self.loop.state_dict(),
                "evals": self.evals, "seconds": self.seconds, "solved": self.solved,
                "best": self.best}

    def load(self, state: dict) -> None:
        self.loop.load_state_dict(state["loop"])
        self.evals, self.seconds, self.solved = state["evals"], state["seconds"], \
            state["solved"]
        self.best = state.get("best")

    def result(self) -> dict:
        final = self.evals[-1]
        out = {"seed": self.seed, "eval_return": final["return"],
               "eval_return_std": final["return_std"], "env_steps": self.loop.step,
               "train_seconds": round(self.seconds, 2),
               "steps_per_s": round(self.loop.step / max(self.seconds, 1e-9), 1),
               "solved": self.solved, "curve": self.evals,
               "policy": self.loop.agent.policy_state()}
        if self.best is not None:
            out.update(self.best_result())
        return out

    def best_result(self) -> dict:
        """keep_best: the last and the kept (best-evaluated) policy, both scored again on
        ``eval_episodes`` held-out episodes (seeds apart from the selecting ones, so the kept
        policy's score is not the maximum it was chosen by)."""
        import copy

        import numpy as np

        from lmlab.agents.evaluation import HELDOUT_SEED, run_episodes

        agent, n = self.loop.agent, self.cfg.eval_episodes
        last = copy.deepcopy(agent.policy_state())
        last_returns = run_episodes(agent, self.eval_env, n, HELDOUT_SEED)
        load_policy(agent, self.best["policy"])
        best_returns = run_episodes(agent, self.eval_env, n, HELDOUT_SEED)
        load_policy(agent, last)
        return {"policy": self.best["policy"], "last_policy": last,
                "best": {"env_step": self.best["env_step"],
                         "select_return": self.best["return"],
                         "heldout_return": float(np.mean(best_returns)),
                         "heldout_return_std": float(np.std(best_returns)),
                         "last_heldout_return": float(np.mean(last_returns))}}


def _next(step: int, every: int) -> int:
    return (step // every + 1) * every


# --- the stage --------------------------------------------------------------------------------


def run(cfg: Config, stop_after: int | None = None) -> dict:
    """``stop_after``: stop at the first checkpoint at or past this many env steps (over all
    seeds), as a kill would (tests of resume)."""
    from lmlab.agents.envs import headless_rendering
    from lmlab.common import print0
    from lmlab.runs import prepare_run
    from lmlab.train.checkpoint import read_checkpoint
    from lmlab.train.loop import resume_path

    headless_rendering()
    resolve(cfg)
    run_ = prepare_run(cfg, "agent")
    threads = set_threads(cfg)
    resume = resume_path(cfg, run_)
    state = None
    if resume is not None:
        ckpt = read_checkpoint(resume)
        state = ckpt["data"]
        run_.rewind_metrics(int(ckpt["step"]))
        print0(f"[lmlab] resumed from {resume} (env step {ckpt['step']:,} over all seeds)")
    done: list[dict] = state["done"] if state else []
    print0(f"[lmlab] agent {cfg.algo} on {cfg.env}: {cfg.seeds} seed(s) x {cfg.max_steps:,} "
           f"env steps, {cfg.n_envs} env(s), {threads} torch thread(s)")
    bar = _bar(cfg, len(done))
    for index in range(len(done), cfg.seeds):
        seed_run = SeedRun(cfg, run_, index, done, bar)
        if state and state["index"] == index and "loop" in state:
            seed_run.load(state)
            if bar is not None:
                bar.update(seed_run.loop.step)
        if not seed_run.train(stop_after):
            return {"stopped_at": seed_run.offset + seed_run.loop.step}
        done.append(seed_run.result())
        r = done[-1]
        print0(f"[lmlab] seed {r['seed']}: eval return {r['eval_return']:.2f} +- "
               f"{r['eval_return_std']:.2f} over {cfg.eval_episodes} episodes, "
               f"{r['steps_per_s']:,.0f} env steps/s")
        if "best" in r:
            b = r["best"]
            print0(f"[lmlab] seed {r['seed']}: kept the policy of env step {b['env_step']:,} "
                   f"(eval {b['select_return']:.2f}); held-out episodes: kept "
                   f"{b['heldout_return']:.2f}, last {b['last_heldout_return']:.2f}")
        if index + 1 < cfg.seeds:  # the next seed resumes from here if killed
            save_state(run_, (index + 1) * cfg.max_steps,
                       {"done": done, "index": index + 1}, cfg.keep_checkpoints)
    if bar is not None:
        bar.close()
    return finish(cfg, run_, done)


def _bar(cfg: Config, seeds_done: int):
    import sys

    from lmlab.common import is_main

    if not (cfg.progress and is_main()):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=cfg.seeds * cfg.max_steps, initial=seeds_done * cfg.max_steps,
                desc=f"agent {cfg.algo}", unit="step", unit_scale=True, dynamic_ncols=True,
                file=sys.stderr, mininterval=1.0)


def finish(cfg: Config, run_, done: list[dict]) -> dict:
    from lmlab.agents import POLICY_BASED
    from lmlab.agents.evaluation import mean_ci95
    from lmlab.common import print0

    mean, ci = mean_ci95([r["eval_return"] for r in done])
    seconds = sum(r["train_seconds"] for r in done)
    steps = sum(r["env_steps"] for r in done)
    summary = {"stage": "agent", "algo": cfg.algo, "env": cfg.env,
               "kind": "policy-based" if cfg.algo in POLICY_BASED else "value-based",
               "seeds": [r["seed"] for r in done], "env_steps_per_seed": cfg.max_steps,
               "eval_episodes": cfg.eval_episodes, "eval_return_mean": mean,
               "eval_return_ci95": ci, "train_seconds": round(seconds, 1),
               "env_steps_per_s": round(steps / max(seconds, 1e-9), 1),
               "per_seed": [{k: v for k, v in r.items() if k not in ("policy", "last_policy")}
                            for r in done]}
    if cfg.keep_best:  # the kept policies, scored on held-out episodes (not the selecting ones)
        summary["best_heldout_return_mean"], summary["best_heldout_return_ci95"] = mean_ci95(
            [r["best"]["heldout_return"] for r in done])
        summary["last_heldout_return_mean"], summary["last_heldout_return_ci95"] = mean_ci95(
            [r["best"]["last_heldout_return"] for r in done])
    extra = save_final(cfg, run_, done)
    summary.update(extra)
    run_.write_json("summary.json", summary)
    print0(f"[lmlab] {cfg.algo} on {cfg.env}: eval return {mean:.2f} +- {ci:.2f} (95% CI over "
           f"{len(done)} seed(s)); {summary['env_steps_per_s']:,.0f} env steps/s")
    if cfg.keep_best:
        print0(f"[lmlab] keep_best, held-out episodes: kept policies "
               f"{summary['best_heldout_return_mean']:.2f} +- "
               f"{summary['best_heldout_return_ci95']:.2f}, last policies "
               f"{summary['last_heldout_return_mean']:.2f} +- "
               f"{summary['last_heldout_return_ci95']:.2f} (final/seed-N/policy.pt is the "
               f"kept one, last.pt the last)")
    if any(r["solved"] for r in done):  # time to solve: the first evaluation at the threshold
        print0("[lmlab] solved (eval return >= the env's reward threshold): " + "; ".join(
            f"seed {r['seed']} at {r['solved']['env_step']:,} env steps, "
            f"{r['solved']['seconds']:.1f} s of training" if r["solved"] else
            f"seed {r['seed']} not solved" for r in done))
    if "policy_map" in extra:
        print0(f"[lmlab] greedy policy and V(s) of seed {done[0]['seed']}:\n"
               f"{extra['policy_map']}")
    print0(f"[lmlab] wrote {run_.path}/ (final/, metrics.jsonl, summary.json"
           f"{', frames.png' if 'frames' in extra else ''})")
    return summary


def save_policy(policy: dict, folder: Path, npy_name: str, pt_name: str) -> None:
    """A tabular policy's Q table as ``folder/npy_name``, any other as ``folder/pt_name``."""
    import numpy as np
    import torch

    if "q" in policy and isinstance(policy["q"], np.ndarray):
        np.save(folder / npy_name, policy["q"])
    else:
        torch.save(policy, folder / pt_name)


def save_final(cfg: Config, run_, done: list[dict]) -> dict:
    """final/seed-N/ (policy.pt or q.npy), final/agent.json; frames.png; the policy map of a
    grid env. Returns what the summary adds."""
    import json

    from lmlab.runs import commit_folder, temp_folder

    tmp = temp_folder(run_.path)
    tmp.mkdir()
    for r in done:
        d = tmp / f"seed-{r['seed']}"
        d.mkdir()
        save_policy(r["policy"], d, "q.npy", "policy.pt")
        if "last_policy" in r:  # keep_best: policy.* is the kept policy, last.* the last one
            save_policy(r["last_policy"], d, "last.npy", "last.pt")
    (tmp / "agent.json").write_text(json.dumps(
        {"algo": cfg.algo, "env": cfg.env, "env_kwargs": env_kwargs(cfg), "hidden": cfg.hidden,
         "seeds": [r["seed"] for r in done]}, indent=2) + "\n")
    commit_folder(tmp, run_.final)
    return show_agent(cfg, run_, done[0])


def load_policy(agent, policy: dict) -> None:
    """Put a ``policy_state()`` (attribute -> weights, or a Q table) back into an agent."""
    for name, value in policy.items():
        if hasattr(value, "shape"):
            getattr(agent, name)[:] = value
        else:
            getattr(agent, name).load_state_dict(value)


def show_agent(cfg: Config, run_, first: dict) -> dict:
    """The trained agent of the first seed: a frame strip and (grid envs) its policy map."""
    from lmlab.agents.envs import headless_rendering, make_env
    from lmlab.agents.evaluation import EVAL_SEED, episode_frames, frame_strip
    from lmlab.agents.gridworld import grid_desc, policy_map
    from lmlab.common import print0

    headless_rendering()
    out: dict = {}
    agent = build(cfg, first["seed"]).agent
    load_policy(agent, first["policy"])
    env = make_env(cfg.env, env_kwargs(cfg), render_mode="rgb_array" if cfg.frames else None)
    desc = grid_desc(env)
    if desc is not None and hasattr(agent, "q"):
        out["policy_map"] = policy_map(desc, agent.q)
        (Path(run_.path) / "policy.txt").write_text(out["policy_map"] + "\n")
    if cfg.frames and "rgb_array" in env.metadata.get("render_modes", []):
        try:
            ret, frames, steps = episode_frames(agent, env, EVAL_SEED)
        except Exception as e:  # noqa: BLE001 - no OpenGL for MuJoCo, ...: the run is whole
            print0(f"[lmlab] warning: no frame strip ({cfg.env} could not render: "
                   f"{type(e).__name__}: {e}); frames=false skips it")
        else:
            (Path(run_.path) / "frames.png").write_bytes(frame_strip(frames))
            out.update(frames="frames.png", frames_return=ret, frames_steps=steps)
    env.close()
    return out
