"""How lmlab's command line sets OpenMP's barrier wait (lmlab.openmp): GOMP_SPINCOUNT=10000
where the user set neither it nor OMP_WAIT_POLICY and torch is not loaded yet."""

import os
import subprocess
import sys

from lmlab.openmp import SPINCOUNT, describe, set_spin_default


def test_the_default_is_set_only_where_the_user_left_both_unset_and_torch_is_not_loaded():
    env = {}
    assert set_spin_default(env, torch_loaded=False) == SPINCOUNT == "10000"
    assert env == {"GOMP_SPINCOUNT": "10000"}
    for mine in ({"GOMP_SPINCOUNT": "300000"}, {"OMP_WAIT_POLICY": "passive"}):
        env = dict(mine)
        assert set_spin_default(env, torch_loaded=False) is None and env == mine
    env = {}
    assert set_spin_default(env, torch_loaded=True) is None and env == {}  # too late to matter


def test_the_line_lmlab_env_prints():
    assert describe({"GOMP_SPINCOUNT": "10000"}) == \
        "OpenMP waits: spin 10000 times, then sleep (GOMP_SPINCOUNT, lmlab's default)"
    assert describe({"GOMP_SPINCOUNT": "5"}) == "OpenMP waits: spin 5 times, then sleep " \
        "(GOMP_SPINCOUNT)"
    assert describe({"OMP_WAIT_POLICY": "active"}) == "OpenMP waits: OMP_WAIT_POLICY=active"
    assert "libgomp's default" in describe({})


def test_the_command_line_sets_it_before_torch_loads():
    """``lmlab`` in a fresh process: the variable is set by the time a stage imports torch
    (libgomp reads it as torch loads it), and a user's own setting is kept."""
    code = ("import os, sys; from lmlab.cli import main; main(['--version']); "
            "import torch; print(os.environ.get('GOMP_SPINCOUNT'))")
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    run = [sys.executable, "-c", code]
    out = subprocess.run(run, env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[-1] == "10000"
    out = subprocess.run(run, env={**env, "GOMP_SPINCOUNT": "7"}, capture_output=True,
                         text=True, check=True).stdout
    assert out.split()[-1] == "7"
