"""Classic-RL training speed and return: `lmlab agent` vs Stable-Baselines3, same algorithm,
hyper-parameters (the configs/agent recipes: rl-baselines3-zoo's), environment and machine.

Cases (``--algos``): ``ppo`` CartPole-v1, ``dqn`` CartPole-v1, ``sac`` Pendulum-v1. Each side
trains ``--steps`` environment steps (default: the recipe's budget) for each of ``--seeds``
seeds; env steps/s = steps over the seconds of training (lmlab: the interaction loop's time,
without its periodic evaluations, which also give the time to solve; SB3: ``model.learn``,
which evaluates nothing). The return is the mean +- 95% CI over seeds. Both trained
policies are then scored by the same deterministic evaluation (lmlab.agents.evaluation:
``--episodes`` episodes on seeds 1_000_000 + i). Timings from a busy machine mean nothing:
the script takes /tmp/lmlab-heavy.lock so heavy runs go one at a time (not with ``--smoke``).

    .venv/bin/python benchmarks/bench_agents.py                       # all three, recipe budgets
    .venv/bin/python benchmarks/bench_agents.py --algos ppo --smoke   # a tiny check, no JSON

JSON goes to ``--out`` unless ``--smoke``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LOCK = "/tmp/lmlab-heavy.lock"
RECIPES = {"ppo": "ppo-cartpole.yaml", "dqn": "dqn-cartpole.yaml", "sac": "sac-pendulum.yaml"}
SMOKE = {"ppo": ["max_steps=512"], "sac": ["max_steps=300", "learning_starts=100"],
         "dqn": ["max_steps=600", "learning_starts=100", "train_freq=64", "gradient_steps=8"]}


def our_config(algo: str, args, out: Path, seed: int):
    from lmlab.config import load_config
    from lmlab.stages import agent

    extra = SMOKE[algo] if args.smoke else []
    steps = [f"max_steps={args.steps}"] if args.steps else []
    cfg = load_config(agent.Config, ROOT / "configs/agent" / RECIPES[algo], [
        "seeds=1", f"seed={seed}", "frames=false", "progress=false", f"output_dir={out}",
        f"eval_episodes={args.episodes}", *extra, *steps])
    if args.threads:
        cfg.threads = args.threads
    agent.resolve(cfg)
    if args.smoke:
        cfg.eval_every = cfg.max_steps  # one evaluation, at the end
    return cfg


def run_ours(cfg) -> dict:
    from lmlab.stages import agent

    s = agent.run(cfg)
    r = s["per_seed"][0]
    out = {"steps_per_s": r["steps_per_s"], "train_seconds": r["train_seconds"],
           "return": r["eval_return"], "return_std": r["eval_return_std"],
           "solved": r["solved"]}
    if "best" in r:  # keep_best recipes: the kept policy, scored again on held-out episodes
        out["kept"] = r["best"]
    return out


def sb3_model(algo: str, cfg):
    import torch
    from stable_baselines3 import DQN, PPO, SAC
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env(cfg.env, n_envs=cfg.n_envs, seed=cfg.seed)
    common = {"learning_rate": _schedule(cfg.lr, cfg.schedule), "gamma": cfg.gamma,
              "seed": cfg.seed, "verbose": 0, "device": "cpu"}
    if algo == "ppo":
        return PPO("MlpPolicy", env, n_steps=cfg.n_steps, batch_size=cfg.batch_size,
                   n_epochs=cfg.n_epochs, gae_lambda=cfg.gae_lambda, ent_coef=cfg.ent_coef,
                   vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm,
                   clip_range=_schedule(cfg.clip, cfg.schedule),
                   policy_kwargs={"net_arch": {"pi": cfg.hidden, "vf": cfg.hidden},
                                  "activation_fn": torch.nn.Tanh}, **common)
    off = {"buffer_size": cfg.buffer_size, "learning_starts": cfg.learning_starts,
           "batch_size": cfg.batch_size, "tau": cfg.tau, "train_freq": cfg.train_freq,
           "gradient_steps": cfg.gradient_steps, "policy_kwargs": {"net_arch": cfg.hidden}}
    if algo == "dqn":
        return DQN("MlpPolicy", env, target_update_interval=cfg.target_update,
                   exploration_fraction=cfg.exploration_fraction,
                   exploration_final_eps=cfg.epsilon_end, max_grad_norm=cfg.max_grad_norm,
                   **off, **common)
    return SAC("MlpPolicy", env, **off, **common)


def _schedule(start: float, kind: str):
    return (lambda remaining: start * remaining) if kind == "linear" else start


class SB3Actor:
    """An SB3 model behind the interface lmlab's evaluation calls."""

    def __init__(self, model):
        self.model = model

    def encode(self, obs):
        return obs

    def to_env(self, a):
        return a

    def act(self, obs, explore=False):
        return self.model.predict(obs, deterministic=not explore)[0]


def run_sb3(algo: str, cfg, threads: int) -> dict:
    import torch

    from lmlab.agents.envs import make_env
    from lmlab.agents.evaluation import EVAL_SEED, run_episodes

    if threads:
        torch.set_num_threads(threads)
    model = sb3_model(algo, cfg)
    t0 = time.perf_counter()
    model.learn(total_timesteps=cfg.max_steps)
    seconds = time.perf_counter() - t0
    env = make_env(cfg.env)
    returns = run_episodes(SB3Actor(model), env, cfg.eval_episodes, EVAL_SEED)
    return {"steps_per_s": round(model.num_timesteps / seconds, 1),
            "train_seconds": round(seconds, 2), "return": float(np.mean(returns)),
            "return_std": float(np.std(returns)), "torch_threads": torch.get_num_threads()}


def bench(algo: str, args, tmp: Path) -> dict:
    from lmlab.agents.evaluation import mean_ci95

    out: dict = {"lmlab": [], "sb3": []}
    for seed in range(args.seeds):
        cfg = our_config(algo, args, tmp / f"{algo}-{seed}", seed)
        if "lmlab" in args.sides:
            out["lmlab"].append(run_ours(cfg))
        if "sb3" in args.sides:
            out["sb3"].append(run_sb3(algo, cfg, args.threads))
    out["env"], out["steps"] = cfg.env, cfg.max_steps
    out["hparams"] = {k: v for k, v in vars(cfg).items() if v is not None and k not in (
        "output_dir", "progress", "frames", "seed", "model", "data")}
    for side in args.sides:
        runs = out[side]
        out[f"{side}_steps_per_s"] = statistics.median(r["steps_per_s"] for r in runs)
        out[f"{side}_return"], out[f"{side}_return_ci95"] = mean_ci95(r["return"] for r in runs)
    if len(args.sides) == 2:
        out["speedup"] = out["lmlab_steps_per_s"] / out["sb3_steps_per_s"]
    return out


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--algos", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--sides", nargs="+", default=["lmlab", "sb3"], choices=["lmlab", "sb3"])
    p.add_argument("--steps", type=int, default=0, help="env steps (0: the recipe's budget)")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--episodes", type=int, default=10, help="evaluation episodes per run")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads for both sides (0: each side's own default)")
    p.add_argument("--smoke", action="store_true", help="tiny budgets; no JSON written")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/agents.json"))
    return p.parse_args()


def main() -> None:
    args = parse_args()
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    with open(LOCK, "w") as lock:
        if not args.smoke:  # a smoke run measures nothing: it waits for no one
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"[bench] waiting for {LOCK} (another heavy run holds it)", flush=True)
                fcntl.flock(lock, fcntl.LOCK_EX)
        with tempfile.TemporaryDirectory() as tmp:
            results = {a: bench(a, args, Path(tmp)) for a in args.algos}
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "argv": sys.argv[1:],
              "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "python": sys.version.split()[0], "results": results}
    if not args.smoke:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2, default=str) + "\n")
    print("| algo | env | steps | side | env steps/s | eval return | train s |")
    print("|---|---|---|---|---|---|---|")
    for algo, r in results.items():
        for side in args.sides:
            for run in r[side]:
                print(f"| {algo} | {r['env']} | {r['steps']} | {side} | "
                      f"{run['steps_per_s']:,.0f} | {run['return']:.1f} +- "
                      f"{run['return_std']:.1f} | {run['train_seconds']:.1f} |")
        for side in args.sides:
            print(f"| {algo} | | | {side}, {len(r[side])} seed(s) | median "
                  f"{r[f'{side}_steps_per_s']:,.0f} | {r[f'{side}_return']:.1f} +- "
                  f"{r[f'{side}_return_ci95']:.1f} (95% CI) | |")
        if "speedup" in r:
            print(f"| {algo} | | | lmlab / sb3 | {r['speedup']:.2f}x | | |")
        solved = [run["solved"] for run in r.get("lmlab", []) if run.get("solved")]
        if solved:
            times = ", ".join(f"{x['seconds']:.1f} s ({x['env_step']:,} steps)" for x in solved)
            print(f"| {algo} | | | lmlab time to solve | | | {times} |")


if __name__ == "__main__":
    main()
