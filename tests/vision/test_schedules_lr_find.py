"""The one-cycle schedule's values by hand, and the LR range test's sweep and suggestion."""

import math

import pytest

from lmlab.train.schedules import lr_factor
from lmlab.vision.lr_find import lr_at, suggest
from tests.tolerance import approx_fp32


def test_one_cycle_values_by_hand():
    # total 10, warmup 0 -> 30% = 3 ramp steps: (s+1)/4, then a cosine from 1 to 0.01 over 7
    f = [lr_factor(s, total=10, warmup=0, schedule="one-cycle", min_ratio=0.01)
         for s in range(11)]
    assert f[:3] == [0.25, 0.5, 0.75]
    assert f[3] == 1.0
    assert f[5] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 2 / 7)))
    assert f[10] == pytest.approx(0.01)


def test_lr_sweep_is_geometric():
    assert lr_at(0, 5, 1e-4, 1.0) == 1e-4
    assert lr_at(4, 5, 1e-4, 1.0) == pytest.approx(1.0)
    assert lr_at(2, 5, 1e-4, 1.0) == pytest.approx(1e-2)


def test_suggestion_is_the_steepest_fall():
    lrs = [10 ** (-5 + i * 0.5) for i in range(9)]
    losses = [2.3, 2.3, 2.3, 2.2, 1.5, 1.3, 1.25, 1.3, 3.0]
    assert suggest(lrs, losses) == lrs[4]  # the fall from 2.2 to 1.3 around index 4
    assert suggest(lrs[:3], losses[:3]) is None


def test_grad_norm_probe_reports_each_layers_gradient_norm(tmp_path):
    import json

    import torch

    from lmlab.vision.insight import GradNormProbe

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    probe = GradNormProbe(model, tmp_path / "g.jsonl", every=2)
    model(torch.ones(1, 3)).sum().backward()
    by_hand = {f"{i}": torch.cat([model[i].weight.grad.flatten(), model[i].bias.grad]).norm()
               for i in (0, 1)}
    model.zero_grad(set_to_none=True)  # as the loop does before it logs
    probe.log({}, 1)  # not a multiple of every: nothing written
    probe.log({}, 2)
    probe.close()
    row = json.loads((tmp_path / "g.jsonl").read_text())
    assert row["step"] == 2 and set(row) == {"step", "0", "1"}
    for k, v in by_hand.items():  # a norm over 8 or 3 fp32 values, two summation orders
        assert row[k] == approx_fp32(float(v), terms=8 + 2)
