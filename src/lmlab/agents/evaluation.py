"""Evaluation done apart from training: deterministic (greedy / mean-action) episodes on a fresh
environment with their own seeds, the mean and 95% confidence interval of the return over
training seeds, and a frame strip of a trained agent for the report.
"""

from __future__ import annotations

import math

import numpy as np

# two-sided 95% quantiles of Student's t with df = 1..30 degrees of freedom
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
       2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
       2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
EVAL_SEED = 1_000_000  # evaluation episodes are seeded apart from every training seed
HELDOUT_SEED = 2_000_000  # keep_best: the kept policy is scored again on these episodes


def mean_ci95(xs) -> tuple[float, float]:
    """(mean, half-width of the 95% t-interval); the half-width is 0 for a single value."""
    xs = [float(x) for x in xs]
    n = len(xs)
    m = sum(xs) / n
    if n < 2:
        return m, 0.0
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    t = T95[n - 2] if n - 1 <= len(T95) else 1.96
    return m, t * sd / math.sqrt(n)


def run_episodes(agent, env, episodes: int, seed: int, frames: list | None = None,
                 render_at=None) -> list[float]:
    """Returns of ``episodes`` deterministic episodes (``agent.act(..., explore=False)``);
    episode i is seeded ``seed + i``. With ``frames``, the rendered frames are appended (only
    at the steps in ``render_at`` when it is given)."""
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done, t = 0.0, False, 0
        while not done:
            if frames is not None and (render_at is None or t in render_at):
                frames.append(env.render())
            t += 1
            a = agent.to_env(agent.act(agent.encode(np.asarray([obs])), explore=False))[0]
            obs, r, term, trunc, _ = env.step(a)
            total += float(r)
            done = term or trunc
        returns.append(total)
    return returns


def episode_frames(agent, env, seed: int, k: int = 8) -> tuple[float, list, int]:
    """(return, ``k`` frames spaced evenly over the episode, its length) of one deterministic
    episode: played once to learn its length, then again (the same seed and greedy actions,
    so the same episode) rendering only the ``k`` kept frames: a MuJoCo frame rendered in
    software costs more than a thousand steps."""
    steps = _episode_length(agent, env, seed)
    keep = set(np.linspace(0, steps - 1, min(k, steps)).round().astype(int).tolist())
    frames: list = []
    ret = run_episodes(agent, env, 1, seed, frames, render_at=keep)[0]
    return ret, frames, steps


def _episode_length(agent, env, seed: int) -> int:
    obs, _ = env.reset(seed=seed)
    steps, done = 0, False
    while not done:
        a = agent.to_env(agent.act(agent.encode(np.asarray([obs])), explore=False))[0]
        obs, _, term, trunc, _ = env.step(a)
        steps += 1
        done = term or trunc
    return steps


def frame_strip(frames: list[np.ndarray], k: int = 8, height: int = 120) -> bytes:
    """``k`` frames spaced evenly over an episode, side by side, as PNG bytes."""
    from io import BytesIO

    from PIL import Image

    idx = np.linspace(0, len(frames) - 1, min(k, len(frames))).round().astype(int)
    tiles = []
    for i in idx:
        img = Image.fromarray(np.asarray(frames[i], np.uint8))
        w = max(1, round(img.width * height / img.height))
        tiles.append(img.resize((w, height), Image.BILINEAR))
    strip = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), height),
                      (255, 255, 255))
    x = 0
    for t in tiles:
        strip.paste(t, (x, 0))
        x += t.width + 4
    buf = BytesIO()
    strip.save(buf, format="PNG")
    return buf.getvalue()
