"""How long OpenMP threads spin at a barrier before they sleep, set once at process start.

torch's CPU kernels and the C decode step (``lmlab.infer.native``) run on GNU OpenMP (the
libgomp torch's Linux wheels ship), whose threads wait at a barrier by spinning
``GOMP_SPINCOUNT`` times (300,000 when neither it nor ``OMP_WAIT_POLICY`` is set), then
sleeping. When another process keeps one of the cores busy, the thread the scheduler took off
that core holds every barrier, and the thread that got there first spends its own time slices
spinning instead of leaving the core to it. Measured on the 2-core AMX Xeon (session 24,
docs/hardware.md "A busy core"), a SmolLM2-135M training step (bf16 autocast, batch 4 x 64, 2
threads) with a ``while 1: pass`` process beside took 7.8-16.5 s at libgomp's default, 3.2-3.4
s at 10,000 spins, 1.9-2.1 s at one thread; idle, 10,000 spins cost ~3% a step (8 pairs side
by side) and greedy decoding nothing measurable, where 1,000 spins or fewer cost 25-35%. So
lmlab's command line sets ``GOMP_SPINCOUNT=10000`` before torch loads, unless the user set it
or ``OMP_WAIT_POLICY``: short waits (a decode step's ~200 barriers a token wait ~1 us each)
still spin, long ones sleep. A spin is one ``pause`` of the CPU (by the vendors' optimization
manuals ~140 cycles on Xeons from Skylake on, fewer on older Intel and on AMD Zen parts). It has no effect in a process that loaded torch
before (``set_spin_default`` then returns None), and none on results: the thread count and
every split of work are the same.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

SPINCOUNT = "10000"


def set_spin_default(environ: MutableMapping[str, str] | None = None,
                     torch_loaded: bool | None = None) -> str | None:
    """Set ``GOMP_SPINCOUNT`` to ``SPINCOUNT`` where neither it nor ``OMP_WAIT_POLICY`` is
    set and torch is not loaded yet (libgomp reads it once, as torch loads it; ``torch_loaded``
    None: look in ``sys.modules``). Returns the value set, None where nothing was."""
    env = os.environ if environ is None else environ
    loaded = "torch" in sys.modules if torch_loaded is None else torch_loaded
    if "GOMP_SPINCOUNT" in env or "OMP_WAIT_POLICY" in env or loaded:
        return None
    env["GOMP_SPINCOUNT"] = SPINCOUNT
    return SPINCOUNT


def describe(environ: MutableMapping[str, str] | None = None) -> str:
    """One line for ``lmlab env``: how this process's OpenMP threads wait."""
    env = os.environ if environ is None else environ
    policy, spins = env.get("OMP_WAIT_POLICY"), env.get("GOMP_SPINCOUNT")
    if spins is not None:
        how = f"spin {spins} times, then sleep (GOMP_SPINCOUNT"
        how += ", lmlab's default)" if spins == SPINCOUNT and policy is None else ")"
    elif policy is not None:
        how = f"OMP_WAIT_POLICY={policy}"
    else:
        how = "libgomp's default (spin 300000 times, then sleep)"
    return f"OpenMP waits: {how}"
