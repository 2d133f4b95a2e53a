"""How long OpenMP threads spin at a barrier before they sleep, chosen once as a command starts.

torch's CPU kernels and the C decode step (``lmlab.infer.native``) run on GNU OpenMP (the
libgomp torch's Linux wheels ship), whose threads wait at a barrier by spinning
``GOMP_SPINCOUNT`` times (300,000 when neither it nor ``OMP_WAIT_POLICY`` is set), then
sleeping. When another process keeps one of the cores busy, the thread the scheduler took off
that core holds every barrier, and the thread that got there first spends its own time slices
spinning instead of leaving the core to it. Measured on the 2-core AMX Xeon (session 24,
docs/hardware.md "A busy core"): with a ``while 1: pass`` process beside, ``lmlab sft`` (full,
SmolLM2-135M, 2 threads) ran 38 tok/s at libgomp's default and 147 at ``GOMP_SPINCOUNT=10000``
(the same losses), and ``lmlab serve`` 16 clients 17.6 vs 121.8 tok/s; idle, the same SFT ran
5-8% slower at 10,000 (3 pairs: 365 / 358 / 373 vs 334 / 348 / 336 tok/s) and greedy decoding
showed no difference. So the setting depends on the machine as a command starts: lmlab's
command line samples the CPUs for ``SAMPLE_S`` before its stage loads torch, and where other
work keeps ``BUSY_CORES`` or more busy it sets ``GOMP_SPINCOUNT=10000`` and says so; idle it
leaves libgomp's default. A user's ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` is always kept.
Load that arrives later in a run is not seen (libgomp reads the setting once, as torch loads
it); a busy core then costs what it costs at libgomp's default (``GOMP_SPINCOUNT=10000`` by
hand). Decoding also runs one thread fewer where that has proved faster
(``lmlab.infer.threads``). Neither setting changes results: the thread count and every split
of work are the same. A spin is one ``pause`` of the CPU (by the vendors' optimization
manuals ~140 cycles on Xeons from Skylake on, fewer on older Intel and on AMD Zen parts).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import MutableMapping

SPINCOUNT = "10000"
SAMPLE_S = 0.1  # how long the CPUs are watched as a command starts
BUSY_CORES = 0.5  # other work on this many cores or more: the short spin


def cpu_times(stat: str) -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs from ``/proc/stat``'s text: its ``cpu`` line's
    user, nice, system, idle, iowait, irq, softirq and steal (time the hypervisor gave to
    another guest: as lost to us as a process's), busy being all but idle and iowait."""
    for line in stat.splitlines():
        if line.startswith("cpu "):
            f = [int(x) for x in line.split()[1:9]]
            f += [0] * (8 - len(f))
            return sum(f) - f[3] - f[4], sum(f)
    raise ValueError("no 'cpu ' line in /proc/stat")


def busy_cores(before: tuple[int, int], after: tuple[int, int], cpus: int) -> float:
    """Cores' worth of busy time between two ``cpu_times`` readings."""
    total = after[1] - before[1]
    return cpus * (after[0] - before[0]) / total if total > 0 else 0.0


def others_busy(seconds: float = SAMPLE_S) -> float | None:
    """Cores' worth of other work on this machine over ``seconds`` (this process sleeps
    meanwhile), None where ``/proc/stat`` cannot be read (not Linux)."""
    try:
        with open("/proc/stat") as f:
            a = cpu_times(f.read())
        time.sleep(seconds)
        with open("/proc/stat") as f:
            b = cpu_times(f.read())
    except (OSError, ValueError):
        return None
    return busy_cores(a, b, os.cpu_count() or 1)


def set_spin_default(environ: MutableMapping[str, str] | None = None,
                     torch_loaded: bool | None = None,
                     busy: float | None = None) -> str | None:
    """Set ``GOMP_SPINCOUNT`` to ``SPINCOUNT`` where other work keeps ``busy`` >=
    ``BUSY_CORES`` cores busy (None: ``others_busy()``), neither ``GOMP_SPINCOUNT`` nor
    ``OMP_WAIT_POLICY`` is set, and torch is not loaded yet (libgomp reads it once, as torch
    loads it; ``torch_loaded`` None: look in ``sys.modules``). Returns the value set, None
    where nothing was (the CPUs are not even sampled then)."""
    env = os.environ if environ is None else environ
    loaded = "torch" in sys.modules if torch_loaded is None else torch_loaded
    if "GOMP_SPINCOUNT" in env or "OMP_WAIT_POLICY" in env or loaded:
        return None
    busy = others_busy() if busy is None else busy
    if busy is None or busy < BUSY_CORES:
        return None
    env["GOMP_SPINCOUNT"] = SPINCOUNT
    print(f"[lmlab] other work kept {busy:.1f} of {os.cpu_count()} cores busy as this "
          f"started: threads sleep sooner at barriers (GOMP_SPINCOUNT={SPINCOUNT}; "
          f"docs/hardware.md)", file=sys.stderr, flush=True)
    return SPINCOUNT


def describe(environ: MutableMapping[str, str] | None = None) -> str:
    """One line for ``lmlab env``: how this process's OpenMP threads wait."""
    env = os.environ if environ is None else environ
    policy, spins = env.get("OMP_WAIT_POLICY"), env.get("GOMP_SPINCOUNT")
    if spins is not None:
        how = f"spin {spins} times, then sleep (GOMP_SPINCOUNT"
        how += ", lmlab's setting beside a busy core)" if spins == SPINCOUNT and policy is None \
            else ")"
    elif policy is not None:
        how = f"OMP_WAIT_POLICY={policy}"
    else:
        how = "libgomp's default (spin 300000 times, then sleep)"
    return f"OpenMP waits: {how}"
