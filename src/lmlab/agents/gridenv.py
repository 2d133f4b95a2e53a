"""``GridWorld-v0``: the configurable grid world as a gymnasium env (rules in gridworld.py).

Actions follow FrozenLake: 0 left, 1 down, 2 right, 3 up; states are row * ncol + col. A move
into a wall or off the grid stays put; ``G`` pays +1 and ends the episode, ``H`` ends it with 0,
every other step pays ``step_reward``. ``slip``: the probability that a move goes to a random
perpendicular direction instead.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym

from lmlab.agents.gridworld import (
    DEFAULT_LAYOUT,
    MOVES,
    draw_grid,
    parse_layout,
    policy_map,
)


class GridWorld(gym.Env):
    metadata: ClassVar[dict] = {"render_modes": ["rgb_array", "ansi"], "render_fps": 4}

    def __init__(self, layout: str = DEFAULT_LAYOUT, slip: float = 0.0, step_reward: float = 0.0,
                 render_mode: str | None = None):
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
