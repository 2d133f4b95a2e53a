"""build_optimizer(fused=True): torch's fused AdamW, the same update as the default loop to fp32
rounding, and the default elsewhere (other stages unchanged)."""

import copy

import torch

from lmlab.train.config import TrainConfig
from lmlab.train.loop import build_optimizer
from tests.tolerance import fp32_tol


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))


def test_fused_adamw_matches_the_default_loop_over_steps():
    cfg = TrainConfig(lr=1e-2, weight_decay=0.1)
    a = _model()
    b = copy.deepcopy(a)
    opt_a, opt_b = build_optimizer(a, cfg), build_optimizer(b, cfg, fused=True)
    assert opt_b.defaults["fused"] and not opt_a.defaults.get("fused")
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(1))
    for _ in range(3):
        for m, o in ((a, opt_a), (b, opt_b)):
            m(x).square().mean().backward()
            o.step()
            o.zero_grad(set_to_none=True)
    moved = max((p - q).abs().max().item() for p, q in zip(a.parameters(), _model().parameters()))
    assert moved > 1e-3  # the steps did move the weights (lr 1e-2 x 3)
    for p, q in zip(a.parameters(), b.parameters()):
        # ~10 roundings per element per step, 3 steps, on weights of size < 1 (the forward and
        # backward are the same ops on the same inputs until the weights differ)
        assert (p - q).abs().max().item() <= fp32_tol(30 * 3, 1.0)


def test_fused_state_loads_into_a_fused_optimizer_and_resumes_the_same():
    cfg = TrainConfig(lr=1e-2)
    a = _model()
    opt = build_optimizer(a, cfg, fused=True)
    a(torch.ones(2, 8)).sum().backward()
    opt.step()
    b = copy.deepcopy(a)
    opt_b = build_optimizer(b, cfg, fused=True)
    opt_b.load_state_dict(copy.deepcopy(opt.state_dict()))
    for m, o in ((a, opt), (b, opt_b)):
        o.zero_grad(set_to_none=True)
        m(torch.ones(2, 8)).sum().backward()
        o.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
