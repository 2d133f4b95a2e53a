"""A configurable grid world (gymnasium env ``lmlab/GridWorld-v0``) and text maps of a tabular
agent's greedy policy and state values for any grid env (GridWorld, FrozenLake).

Layout: rows separated by ``/``; ``S`` start, ``G`` goal (+1, ends), ``H`` hole (ends, 0),
``#`` wall (moving into it or off the grid stays put), ``.`` floor (``F`` too, FrozenLake's
letter). Actions follow FrozenLake: 0 left, 1 down, 2 right, 3 up. States are row * ncol + col.
``slip``: the probability that a move goes to a random perpendicular direction instead.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

DEFAULT_LAYOUT = "S.../.#.#/...#/#..G"
ARROWS = "←↓→↑"
MOVES = ((0, -1), (1, 0), (0, 1), (-1, 0))
CELLS = set("SGH#.F")


def parse_layout(layout: str) -> list[str]:
    """Rows of ``layout``, checked: one S, at least one G, equal row lengths, known letters."""
    rows = [r.strip() for r in layout.strip().split("/")]
    problems = []
    if len({len(r) for r in rows}) != 1 or not rows[0]:
        problems.append("rows must all have the same, non-zero length")
    bad = sorted(set("".join(rows)) - CELLS)
    if bad:
        problems.append(f"unknown cells {''.join(bad)!r} (use S G H # . F)")
    if "".join(rows).count("S") != 1:
        problems.append("needs exactly one start S")
    if "G" not in "".join(rows):
        problems.append("needs at least one goal G")
    if problems:
        raise ValueError(f"grid layout {layout!r}: " + "; ".join(problems))
    return rows


def _gym():
    import gymnasium as gym

    return gym


class GridWorld(_gym().Env):
    metadata: ClassVar[dict] = {"render_modes": ["rgb_array", "ansi"], "render_fps": 4}

    def __init__(self, layout: str = DEFAULT_LAYOUT, slip: float = 0.0, step_reward: float = 0.0,
                 render_mode: str | None = None):
        gym = _gym()
        self.desc = parse_layout(layout)
        self.nrow, self.ncol = len(self.desc), len(self.desc[0])
        self.slip, self.step_reward, self.render_mode = slip, step_reward, render_mode
        self.observation_space = gym.spaces.Discrete(self.nrow * self.ncol)
        self.action_space = gym.spaces.Discrete(4)
        flat = "".join(self.desc)
        self.start = flat.index("S")
        self.s = self.start

    def cell(self, s: int) -> str:
        return self.desc[s // self.ncol][s % self.ncol]

    def move(self, s: int, a: int) -> int:
        r, c = divmod(s, self.ncol)
        dr, dc = MOVES[a]
        r2, c2 = r + dr, c + dc
        if 0 <= r2 < self.nrow and 0 <= c2 < self.ncol and self.desc[r2][c2] != "#":
            return r2 * self.ncol + c2
        return s

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.s = self.start
        return self.s, {}

    def step(self, action):
        a = int(action)
        if self.slip > 0 and self.np_random.random() < self.slip:
            a = (a + (1 if self.np_random.random() < 0.5 else 3)) % 4  # a perpendicular move
        self.s = self.move(self.s, a)
        kind = self.cell(self.s)
        reward = 1.0 if kind == "G" else self.step_reward
        return self.s, reward, kind in "GH", False, {}

    def render(self):
        if self.render_mode == "ansi":
            return policy_map(self.desc, None, self.s)
        return draw_grid(self.desc, self.s)


COLOURS = {"#": (60, 60, 70), "H": (40, 90, 160), "G": (70, 170, 80), "S": (225, 225, 200),
           ".": (235, 235, 235), "F": (235, 235, 235)}


def draw_grid(desc: list[str], agent: int, cell: int = 32) -> np.ndarray:
    """An (H, W, 3) uint8 picture of the grid with the agent as a red square."""
    nrow, ncol = len(desc), len(desc[0])
    img = np.zeros((nrow * cell, ncol * cell, 3), np.uint8)
    for r in range(nrow):
        for c in range(ncol):
            img[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = COLOURS[desc[r][c]]
            img[r * cell, c * cell:(c + 1) * cell] = 180  # grid lines
            img[r * cell:(r + 1) * cell, c * cell] = 180
    r, c = divmod(agent, ncol)
    m = cell // 4
    img[r * cell + m:(r + 1) * cell - m, c * cell + m:(c + 1) * cell - m] = (200, 40, 40)
    return img


def grid_desc(env) -> list[str] | None:
    """The layout rows of a grid env (ours or FrozenLake), else None."""
    desc = getattr(env.unwrapped, "desc", None)
    if desc is None:
        return None
    return ["".join(c.decode() if isinstance(c, bytes) else str(c) for c in row) for row in desc]


def policy_map(desc: list[str], q: np.ndarray | None, agent: int | None = None) -> str:
    """Greedy action arrows (or the layout letter on walls, holes, goals) and, beside them,
    V(s) = max_a Q(s, a), one grid row per line."""
    ncol = len(desc[0])
    lines = []
    for r, row in enumerate(desc):
        arrows, values = [], []
        for c, kind in enumerate(row):
            s = r * ncol + c
            if agent is not None and s == agent:
                arrows.append("A")
            elif q is None or kind in "#HG":
                arrows.append(kind)
            else:
                arrows.append(ARROWS[int(np.argmax(q[s]))])
            values.append("   .  " if q is None or kind in "#" else f"{q[s].max():6.3f}")
        lines.append(" ".join(arrows) + ("   " + " ".join(values) if q is not None else ""))
    return "\n".join(lines)
