"""The grid world's layout (its gymnasium env ``GridWorld-v0`` is in gridenv.py), pictures, and
text maps of a tabular agent's greedy policy and state values for any grid env (GridWorld,
FrozenLake). Needs only numpy, so configs are checked without gymnasium.

Layout: rows separated by ``/``; ``S`` start, ``G`` goal (+1, ends), ``H`` hole (ends, 0),
``#`` wall (moving into it or off the grid stays put), ``.`` floor (``F`` too, FrozenLake's
letter). Actions follow FrozenLake: 0 left, 1 down, 2 right, 3 up. States are row * ncol + col.
``slip``: the probability that a move goes to a random perpendicular direction instead.
"""

from __future__ import annotations

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
    """The layout rows of a grid env whose states are its cells (ours, FrozenLake), else None
    (Taxi has a map too, but its states are not the map's cells)."""
    desc = getattr(env.unwrapped, "desc", None)
    if desc is None:
        return None
    rows = ["".join(c.decode() if isinstance(c, bytes) else str(c) for c in row) for row in desc]
    n = getattr(env.observation_space, "n", None)
    if n != len(rows) * len(rows[0]) or set("".join(rows)) - CELLS:
        return None
    return rows


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
