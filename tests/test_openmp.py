"""How lmlab's command line sets OpenMP's barrier wait (lmlab.openmp): GOMP_SPINCOUNT=10000
where other work keeps half a core or more busy as a stage starts, the user set neither it
nor OMP_WAIT_POLICY, and torch is not loaded yet; the CPU sample from /proc/stat's ticks."""

import os
import subprocess
import sys

import pytest

from lmlab.openmp import (
    BUSY_CORES,
    SPINCOUNT,
    busy_cores,
    cpu_times,
    describe,
    others_busy,
    set_spin_default,
)

STAT = """cpu  3072253 31958 294280 1978372 17666 0 1599 2348 0 0
cpu0 1536000 16000 147000 989000 8800 0 800 1100 0 0
intr 1 2 3
"""


def test_cpu_times_reads_the_cpu_line_busy_being_all_but_idle_and_iowait():
    total = 3072253 + 31958 + 294280 + 1978372 + 17666 + 0 + 1599 + 2348
    assert cpu_times(STAT) == (total - 1978372 - 17666, total)
    assert cpu_times("cpu  10 0 5 80 5\n") == (15, 100)  # an old kernel: no irq .. steal
    with pytest.raises(ValueError, match="no 'cpu ' line"):
        cpu_times("intr 1 2\n")


def test_busy_cores_is_the_busy_share_of_the_ticks_times_the_cpus():
    # 2 CPUs over 0.1 s at 100 ticks a second: 20 ticks, 10 busy = one core's worth
    assert busy_cores((100, 1000), (110, 1020), 2) == 1.0
    assert busy_cores((100, 1000), (101, 1020), 2) == 0.1
    assert busy_cores((100, 1000), (100, 1000), 2) == 0.0  # no tick went by


def test_the_setting_only_beside_a_busy_core_and_never_over_the_users(capsys):
    env = {}
    assert set_spin_default(env, torch_loaded=False, busy=1.0) == SPINCOUNT == "10000"
    assert env == {"GOMP_SPINCOUNT": "10000"}
    assert "other work kept 1.0 of" in capsys.readouterr().err
    env = {}
    assert set_spin_default(env, torch_loaded=False, busy=BUSY_CORES - 0.01) is None
    assert env == {}  # idle: libgomp's default, faster there
    for mine in ({"GOMP_SPINCOUNT": "300000"}, {"OMP_WAIT_POLICY": "passive"}):
        env = dict(mine)
        assert set_spin_default(env, torch_loaded=False, busy=2.0) is None and env == mine
    env = {}
    assert set_spin_default(env, torch_loaded=True, busy=2.0) is None and env == {}


def test_others_busy_sees_a_spinning_process():
    """A process spinning on one core while this one sleeps through the sample: about one
    core's worth (/proc/stat where there is one)."""
    if others_busy(0.01) is None:
        pytest.skip("no /proc/stat here")
    busy = "import time\nt = time.time() + 5\nwhile time.time() < t: pass"
    spin = subprocess.Popen([sys.executable, "-c", busy])
    try:
        seen = max(others_busy(0.3) for _ in range(3))
    finally:
        spin.kill()
        spin.wait()
    assert seen >= BUSY_CORES, seen


def test_the_line_lmlab_env_prints():
    assert describe({"GOMP_SPINCOUNT": "10000"}) == ("OpenMP waits: spin 10000 times, then "
                                                     "sleep (GOMP_SPINCOUNT, lmlab's setting "
                                                     "beside a busy core)")
    assert describe({"GOMP_SPINCOUNT": "5"}) == "OpenMP waits: spin 5 times, then sleep " \
        "(GOMP_SPINCOUNT)"
    assert describe({"OMP_WAIT_POLICY": "active"}) == "OpenMP waits: OMP_WAIT_POLICY=active"
    assert "libgomp's default" in describe({})


def _stage_sees(env: dict) -> str:
    """GOMP_SPINCOUNT as a stage command (``lmlab env --help``) run in a fresh process with
    ``env`` leaves it."""
    code = ("import os; from lmlab.cli import main; main(['env', '--help']); "
            "print(os.environ.get('GOMP_SPINCOUNT'))")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True).stdout.split()[-1]


def test_a_stage_command_sets_it_beside_a_busy_core_and_keeps_the_users():
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    assert _stage_sees({**env, "GOMP_SPINCOUNT": "7"}) == "7"
    if others_busy(0.01) is None:
        pytest.skip("no /proc/stat here")
    busy = "import time\nt = time.time() + 20\nwhile time.time() < t: pass"
    spin = subprocess.Popen([sys.executable, "-c", busy])
    try:
        assert max(others_busy(0.2) for _ in range(3)) >= BUSY_CORES  # it spins by now
        assert _stage_sees(env) == SPINCOUNT
    finally:
        spin.kill()
        spin.wait()
