"""Preference losses: hand-computed values, and parity with TRL 1.16 on the same log-probs.

TRL keeps most of its losses inside trainer methods, so the parity tests call those methods
(``DPOTrainer._compute_loss``, ``KTOTrainer._compute_loss``, ``CPOTrainer.cpo_loss``,
``ORPOTrainer.odds_ratio_loss``) on a stand-in ``self`` and a stand-in model that returns the
per-token log-probs we chose - the loss code itself is TRL's, unchanged.
"""

import math
import os
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from lmlab.losses.preference import (
    PAIR_LOSSES,
    PairLogps,
    PrefParams,
    cdpo,
    dpo,
    ipo,
    kto,
    kto_reference_point,
    log1mexp,
    orpo,
    simpo,
)
from tests.tolerance import fp32_tol

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


# Every case runs in float64 (eps 2.2e-16), and so does TRL on float64 inputs (ORPO aside):
# abs 1e-12 on hand-computed values of size ~1 is ~5000 eps, and 1e-6 against TRL is wider still.


def t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def sig(x):
    return 1 / (1 + math.exp(-x))


# one pair: policy (chosen -1, rejected -3), reference (-2, -2); chosen 2 tokens, rejected 4
ONE = PairLogps(chosen=t(-1.0), rejected=t(-3.0), chosen_tokens=t(2), rejected_tokens=t(4),
                ref_chosen=t(-2.0), ref_rejected=t(-2.0))


# --- hand-computed ----------------------------------------------------------------------------


def test_dpo_by_hand():
    out = dpo(ONE, PrefParams(beta=0.5))  # h = 1 - (-1) = 2, z = beta h = 1
    assert out.losses.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-12)
    assert (out.chosen_rewards.item(), out.rejected_rewards.item()) == (0.5, -0.5)


def test_cdpo_by_hand_and_reduces_to_dpo():
    # -(1-e) log s(z) - e log s(-z) = -log s(z) + e z
    out = cdpo(ONE, PrefParams(beta=0.5, label_smoothing=0.1))
    assert out.losses.item() == pytest.approx(math.log(1 + math.exp(-1)) + 0.1 * 1.0, abs=1e-12)
    zero = cdpo(ONE, PrefParams(beta=0.5, label_smoothing=0.0))
    assert zero.losses.item() == pytest.approx(dpo(ONE, PrefParams(beta=0.5)).losses.item())


def test_ipo_by_hand():
    # per-token log-ratios: 1/2 - (-1)/4 = 0.75; target 1 / (2 * 0.5) = 1
    out = ipo(ONE, PrefParams(beta=0.5))
    assert out.losses.item() == pytest.approx(0.0625, abs=1e-12)


def test_simpo_by_hand_and_ignores_reference():
    lp = PairLogps(chosen=t(-2.0), rejected=t(-3.0), chosen_tokens=t(4), rejected_tokens=t(2))
    out = simpo(lp, PrefParams(beta=2.0, simpo_gamma=0.5))  # 2 * (-0.5 + 1.5) - 0.5 = 1.5
    assert out.losses.item() == pytest.approx(math.log(1 + math.exp(-1.5)), abs=1e-12)
    assert (out.chosen_rewards.item(), out.rejected_rewards.item()) == (-1.0, -3.0)


def test_orpo_by_hand():
    # chosen P = 0.5 (odds 1), rejected P = 0.25 (odds 1/3): log odds ratio = log 3
    lp = PairLogps(chosen=t(2 * math.log(0.5)), rejected=t(math.log(0.25)), chosen_tokens=t(2),
                   rejected_tokens=t(1))
    out = orpo(lp, PrefParams(beta=0.1))
    want = -math.log(0.5) + 0.1 * math.log(1 + 1 / 3)
    assert out.losses.item() == pytest.approx(want, abs=1e-12)


def test_log1mexp_both_branches():
    x = t(-1e-8, -0.1, -0.7, -5.0, -50.0)
    # each from the libm formula that is exact to an ulp there: log(1 - e^x) rounds to 0 at -50
    # (the true value is -1.9e-22), so rtol alone, no atol, is what checks the far end
    want = [math.log1p(-math.exp(v)) if v < -1 else math.log(-math.expm1(v)) for v in x.tolist()]
    assert torch.allclose(log1mexp(x), t(*want), rtol=1e-12, atol=0)


def test_kto_by_hand():
    out = kto(t(-1.0, -3.0), t(-2.0, -2.0), torch.tensor([True, False]), t(0.2),
              PrefParams(beta=0.5, desirable_weight=1.0, undesirable_weight=2.0))
    good = 1 - sig(0.5 * (1 - 0.2))
    bad = 2 * (1 - sig(0.5 * (0.2 + 1)))
    assert out.losses.tolist() == pytest.approx([good, bad], abs=1e-12)
    assert out.rewards.tolist() == [0.5, -0.5]


def test_kto_reference_point_is_clamped_mean():
    assert kto_reference_point(t(-1.0, -2.0), t(-2.0, -2.0)).item() == 0.5
    assert kto_reference_point(t(-3.0, -3.0), t(-2.0, -2.0)).item() == 0.0  # never negative


def test_reference_losses_refuse_missing_reference():
    lp = PairLogps(chosen=t(-1.0), rejected=t(-2.0), chosen_tokens=t(1), rejected_tokens=t(1))
    for name, spec in PAIR_LOSSES.items():
        if spec.needs_reference:
            with pytest.raises(ValueError, match="reference"):
                spec.fn(lp, PrefParams())
        else:
            assert torch.isfinite(spec.fn(lp, PrefParams()).losses).all()


def test_gradients_push_chosen_up_and_rejected_down():
    for name, spec in PAIR_LOSSES.items():
        c, r = t(-4.0).requires_grad_(), t(-5.0).requires_grad_()
        lp = PairLogps(chosen=c, rejected=r, chosen_tokens=t(3), rejected_tokens=t(3),
                       ref_chosen=t(-4.5), ref_rejected=t(-4.5))
        spec.fn(lp, PrefParams(beta=spec.default_beta)).losses.sum().backward()
        assert c.grad.item() < 0 < r.grad.item(), name


# --- parity with TRL ----------------------------------------------------------------------------

B, T = 4, 9


def _random_pairs(seed=0):
    """Per-token log-probs for 2B rows (chosen then rejected), completions of varied length."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(2 * B, T, dtype=torch.long)
    for i in range(2 * B):
        start = int(torch.randint(1, 4, (1,), generator=g))
        end = int(torch.randint(start + 1, T + 1, (1,), generator=g))
        mask[i, start:end] = 1
    per_token = -torch.rand(2 * B, T - 1, generator=g, dtype=torch.float64) * 2  # (2B, T-1)
    per_token = per_token * mask[:, 1:]  # TRL's fused head returns 0 where the label is -100
    ref = -torch.rand(2 * B, generator=g, dtype=torch.float64) * 2 * mask.sum(1)
    return mask, per_token, ref


def _ours(mask, per_token, ref) -> PairLogps:
    sums, lens = per_token.sum(1), mask.sum(1).double()
    return PairLogps(chosen=sums[:B], rejected=sums[B:], chosen_tokens=lens[:B],
                     rejected_tokens=lens[B:], ref_chosen=ref[:B], ref_rejected=ref[B:])


def _fake_model(per_token):
    n = per_token.shape
    return lambda **kw: SimpleNamespace(log_probs=per_token, entropy=torch.zeros(n),
                                        mean_logits=torch.zeros(n),
                                        is_top1=torch.zeros(n, dtype=torch.bool))


def _accelerator():
    return SimpleNamespace(device=torch.device("cpu"), gather=lambda x: x,
                           gather_for_metrics=lambda x: x, unwrap_model=lambda m: m)


def _trl_dpo(mask, per_token, ref, loss_type, beta, label_smoothing=0.0):
    from trl import DPOTrainer

    stub = SimpleNamespace(model=SimpleNamespace(training=True), accelerator=_accelerator(),
                           aux_loss_enabled=False, ld_alpha=None, precompute_ref_logps=True,
                           f_divergence_type="reverse_kl", loss_types=[loss_type],
                           loss_weights=[1.0], beta=beta, label_smoothing=label_smoothing,
                           use_weighting=False, _metrics={"train": defaultdict(list)},
                           _total_train_tokens=0, _tp_size=1)
    b = ref.shape[0] // 2
    inputs = {"input_ids": torch.zeros_like(mask), "attention_mask": torch.ones_like(mask),
              "completion_mask": mask, "ref_chosen_logps": ref[:b], "ref_rejected_logps": ref[b:]}
    loss = DPOTrainer._compute_loss(stub, _fake_model(per_token), inputs, False)
    return loss, stub._metrics["train"]


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_matches_trl(beta):
    mask, per_token, ref = _random_pairs()
    out = dpo(_ours(mask, per_token, ref), PrefParams(beta=beta))
    loss, metrics = _trl_dpo(mask, per_token, ref, "sigmoid", beta)
    assert out.losses.mean().item() == pytest.approx(loss.item(), abs=1e-6)
    assert out.chosen_rewards.mean().item() == pytest.approx(metrics["rewards/chosen"][0], abs=1e-6)
    assert out.rejected_rewards.mean().item() == pytest.approx(metrics["rewards/rejected"][0],
                                                               abs=1e-6)
    acc = (out.chosen_rewards > out.rejected_rewards).double().mean().item()
    assert acc == pytest.approx(metrics["rewards/accuracies"][0])


def test_ipo_matches_trl():
    mask, per_token, ref = _random_pairs(1)
    out = ipo(_ours(mask, per_token, ref), PrefParams(beta=0.3))
    loss, _ = _trl_dpo(mask, per_token, ref, "ipo", 0.3)
    assert out.losses.mean().item() == pytest.approx(loss.item(), abs=1e-6)


def test_cdpo_matches_trl():
    """TRL 1.16 has no label-smoothed 'sigmoid'; its 'aot' loss is exactly cDPO for one pair
    (sorting one pair changes nothing), and CPO's label-smoothed 'sigmoid' on log-ratios is
    cDPO for a batch."""
    from trl.experimental.cpo.cpo_trainer import CPOTrainer

    mask, per_token, ref = _random_pairs(2)
    lp = _ours(mask, per_token, ref)
    out = cdpo(lp, PrefParams(beta=0.2, label_smoothing=0.15))
    for i in range(B):
        rows = [i, B + i]
        loss, _ = _trl_dpo(mask[rows], per_token[rows], ref[rows], "aot", 0.2, 0.15)
        assert out.losses[i].item() == pytest.approx(loss.item(), abs=1e-6)
    stub = SimpleNamespace(alpha=0.0, loss_type="sigmoid", beta=0.2, label_smoothing=0.15,
                           simpo_gamma=0.0, accelerator=_accelerator())
    losses, _, _ = CPOTrainer.cpo_loss(stub, lp.chosen - lp.ref_chosen,
                                       lp.rejected - lp.ref_rejected)
    assert torch.allclose(out.losses, losses, atol=1e-6)


def test_simpo_matches_trl():
    from trl.experimental.cpo.cpo_trainer import CPOTrainer

    mask, per_token, ref = _random_pairs(3)
    lp = _ours(mask, per_token, ref)
    out = simpo(lp, PrefParams(beta=2.0, simpo_gamma=0.7))
    stub = SimpleNamespace(alpha=0.0, loss_type="simpo", beta=2.0, label_smoothing=0.0,
                           simpo_gamma=0.7, accelerator=_accelerator())
    # CPOTrainer feeds SimPO length-averaged log-probs (average_log_prob=True for simpo)
    losses, cr, rr = CPOTrainer.cpo_loss(stub, lp.chosen / lp.chosen_tokens,
                                         lp.rejected / lp.rejected_tokens)
    assert torch.allclose(out.losses, losses, atol=1e-6)
    assert torch.allclose(out.chosen_rewards, cr, atol=1e-6)
    assert torch.allclose(out.rejected_rewards, rr, atol=1e-6)


def test_orpo_matches_trl():
    from trl.experimental.orpo.orpo_trainer import ORPOTrainer

    mask, per_token, ref = _random_pairs(4)
    lp = _ours(mask, per_token, ref)
    out = orpo(lp, PrefParams(beta=0.25))
    stub = SimpleNamespace(beta=0.25, accelerator=_accelerator())
    avg_c, avg_r = lp.chosen / lp.chosen_tokens, lp.rejected / lp.rejected_tokens
    trl_losses, cr, rr, _, _ = ORPOTrainer.odds_ratio_loss(stub, avg_c, avg_r)
    # TRL: loss = nll - mean(beta * log sigmoid(log odds)); ours adds the chosen NLL per pair
    trl_losses, cr = trl_losses.double(), cr.double()  # TRL computes ORPO in float32
    # its fp32 chain: log1p(-exp) of both averages (within 2), their differences, a logsigmoid
    # and a product: about 10 roundings of values within 4
    tol = fp32_tol(10, 4.0)
    assert torch.allclose(out.losses - (-avg_c), -trl_losses, rtol=0, atol=tol)
    assert torch.allclose(out.chosen_rewards, cr, rtol=0, atol=tol)
    nll = -avg_c.mean()
    assert out.losses.mean().item() == pytest.approx((nll - trl_losses.mean()).item(), abs=tol)


def test_kto_matches_trl():
    from trl import KTOTrainer

    g = torch.Generator().manual_seed(5)
    N = 6
    mask = torch.zeros(N, T, dtype=torch.long)
    mask[:, 3:] = 1
    per_token = -torch.rand(N, T - 1, generator=g, dtype=torch.float64) * mask[:, 1:]
    ref = -torch.rand(N, generator=g, dtype=torch.float64) * 6
    kl_logps = -torch.rand(N, generator=g, dtype=torch.float64) * 6
    ref_kl = kl_logps - torch.rand(N, generator=g, dtype=torch.float64)  # KL estimate > 0
    labels = torch.tensor([True, False, True, True, False, False])
    params = PrefParams(beta=0.3, desirable_weight=1.0, undesirable_weight=1.5)
    z0 = kto_reference_point(kl_logps, ref_kl)
    ours = kto(per_token.sum(1), ref, labels, z0, params)

    stub = SimpleNamespace(model=SimpleNamespace(training=True), accelerator=_accelerator(),
                           aux_loss_enabled=False, precompute_ref_logps=True, calculate_KL=True,
                           loss_type="kto", beta=0.3, desirable_weight=1.0,
                           undesirable_weight=1.5, _metrics={"train": defaultdict(list)},
                           _total_train_tokens=0, _tp_size=1,
                           _compute_kl_logps=lambda model, batch: kl_logps)
    batch = {"input_ids": torch.zeros(N, T, dtype=torch.long),
             "attention_mask": torch.ones(N, T, dtype=torch.long), "completion_mask": mask,
             "label": labels, "ref_logps": ref, "ref_KL_logps": ref_kl}
    loss = KTOTrainer._compute_loss(stub, _fake_model(per_token), batch, False)
    assert ours.losses.mean().item() == pytest.approx(loss.item(), abs=1e-6)
    assert z0.item() == pytest.approx(stub._metrics["train"]["kl"][0], abs=1e-6)
    assert ours.rewards[labels].mean().item() == pytest.approx(
        stub._metrics["train"]["rewards/chosen"][0], abs=1e-6)
