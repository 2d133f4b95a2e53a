"""DQN on CartPole-v1 over many seeds, lmlab and Stable-Baselines3 side by side: the evaluation
curve of every seed (the same deterministic episodes, seeds 1_000_000 + i, every
``--eval-every`` env steps), for judging a recipe by more than its last evaluation.

A quality script, not a timing one: returns are deterministic per seed, so it may run beside
other jobs (one torch thread). lmlab runs the recipe with ``keep_best=true`` and any ``--set``
overrides; SB3 runs the same hyper-parameters (``bench_agents.sb3_model``) with an evaluation
callback. One JSON line per seed and side is appended to ``--out``.

    .venv/bin/python benchmarks/dqn_seeds.py --side lmlab --seeds 0 1 2 3 4 --set schedule=linear
    .venv/bin/python benchmarks/dqn_seeds.py --side sb3 --seeds 3 4
    .venv/bin/python benchmarks/dqn_seeds.py --side lmlab --seeds 0 --smoke   # a tiny check
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

SMOKE = ["max_steps=600", "learning_starts=100", "train_freq=64", "gradient_steps=8",
         "eval_every=300"]


def config(seed: int, sets: list[str], out: Path, smoke: bool):
    from lmlab.config import load_config
    from lmlab.stages import agent

    cfg = load_config(agent.Config, ROOT / "configs/agent/dqn-cartpole.yaml", [
        "seeds=1", f"seed={seed}", "frames=false", "progress=false", "threads=1",
        "keep_best=true", f"output_dir={out}", *(SMOKE if smoke else []), *sets])
    agent.resolve(cfg)
    return cfg


def run_lmlab(cfg) -> dict:
    from lmlab.stages import agent

    r = agent.run(cfg)["per_seed"][0]
    return {"curve": [round(e["return"], 1) for e in r["curve"]],
            "last": r["eval_return"], "best": r["best"], "train_seconds": r["train_seconds"]}


def run_sb3(cfg) -> dict:
    from bench_agents import SB3Actor, sb3_model
    from stable_baselines3.common.callbacks import BaseCallback

    from lmlab.agents.envs import make_env
    from lmlab.agents.evaluation import EVAL_SEED, run_episodes

    env, curve = make_env(cfg.env), []

    class Evaluate(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % cfg.eval_every == 0:
                returns = run_episodes(SB3Actor(self.model), env, cfg.eval_episodes, EVAL_SEED)
                curve.append(round(float(np.mean(returns)), 1))
            return True

    model = sb3_model("dqn", cfg)
    t0 = time.perf_counter()
    model.learn(total_timesteps=cfg.max_steps, callback=Evaluate())
    seconds = time.perf_counter() - t0
    returns = run_episodes(SB3Actor(model), env, cfg.eval_episodes, EVAL_SEED)
    return {"curve": curve, "last": float(np.mean(returns)), "env_steps": model.num_timesteps,
            "train_seconds": round(seconds, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--side", choices=["lmlab", "sb3"], required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--set", nargs="*", default=[], help="lmlab keys, e.g. schedule=linear")
    p.add_argument("--label", default="", help="name of this arm in the JSON lines")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/dqn_seeds.jsonl"))
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = config(seed, args.set, Path(tmp) / "run", args.smoke)
            r = run_lmlab(cfg) if args.side == "lmlab" else run_sb3(cfg)
        row = {"side": args.side, "label": args.label or " ".join(args.set) or "recipe",
               "seed": seed, "max_steps": cfg.max_steps, "eval_every": cfg.eval_every, **r}
        print(json.dumps(row), flush=True)
        if not args.smoke:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
