"""Policy losses by hand, and GRPO parity with TRL 1.16.

TRL keeps the GRPO loss inside ``GRPOTrainer._compute_loss``; the parity test calls that method
on a stand-in ``self`` whose ``_get_per_token_logps_and_entropies`` returns the log-probs we
chose, so the loss arithmetic is TRL's, unchanged.
"""

import math
import os
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from lmlab.losses.policy import (
    entropy_from_logits,
    grpo_loss,
    kl_estimate,
    ppo_policy_loss,
    value_loss,
)
from tests.tolerance import approx_fp32

# The hand-computed cases below run in fp32 over a few tokens: a ratio (exp of a difference),
# a clip, a product and a masked mean of <= 4 tokens, about 12 roundings of values <= 2
TERMS = 12

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def test_ppo_policy_loss_by_hand():
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.5, 0.5, 0.5, 1.0]]))  # ratios 1.5, .5, .5, 1
    adv = torch.tensor([[1.0, 1.0, -1.0, 2.0]])
    out = ppo_policy_loss(logp, old, adv, torch.ones(1, 4), clip_eps=0.2)
    # per token: -min(1.5, 1.2) = -1.2 (clipped); -min(.5, .8) = -.5 (not clipped: A > 0);
    #            -min(-.5, -.8) = .8 (clipped); -2
    assert out.loss.item() == approx_fp32((-1.2 - 0.5 + 0.8 - 2.0) / 4, TERMS, 2.0)
    assert out.clip_frac.item() == 0.5  # 2 of 4: exact in fp32
    k3 = [r - math.log(r) - 1 for r in (1.5, 0.5, 0.5, 1.0)]
    assert out.approx_kl.item() == approx_fp32(sum(k3) / 4, TERMS, 2.0)
    # padding does not count; asymmetric clip (eps_high .6) leaves ratio 1.5 unclipped
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    out = ppo_policy_loss(logp, old, adv, mask, clip_eps=0.2, clip_eps_high=0.6)
    assert out.loss.item() == approx_fp32((-1.5 - 0.5) / 2, TERMS, 2.0)
    assert out.clip_frac.item() == 0.0


def test_ppo_policy_gradient_is_zero_where_clipped():
    logp = torch.log(torch.tensor([[1.5, 1.1]])).requires_grad_()
    ppo_policy_loss(logp, torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2)).loss.backward()
    assert logp.grad[0, 0].item() == 0.0
    assert logp.grad[0, 1].item() == approx_fp32(-1.1 / 2, TERMS)  # d(-r/2)/dlogp = -r/2


def test_value_loss_by_hand():
    values, old = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.8]])
    returns, mask = torch.ones(1, 2), torch.ones(1, 2)
    # token 1: unclipped 0, V_clip = 0 + .5 -> (.5 - 1)^2 = .25 wins;
    # token 2: unclipped 1, V_clip = .8 - .5 = .3 -> .49; max 1
    loss, frac = value_loss(values, old, returns, mask, clip=0.5)
    assert loss.item() == approx_fp32(0.5 * (0.25 + 1.0) / 2, TERMS)
    assert frac.item() == 0.5  # 1 of 2: exact in fp32
    loss, _ = value_loss(values, old, returns, mask, clip=0.0)
    assert loss.item() == approx_fp32(0.5 * (0.0 + 1.0) / 2, TERMS)


def test_entropy_by_hand():
    logits = torch.tensor([[0.0, 0.0], [0.0, math.log(3.0)]])  # p = (.5, .5), (.25, .75)
    h = entropy_from_logits(logits)
    assert h.tolist() == approx_fp32([math.log(2), -(0.25 * math.log(0.25)
                                                     + 0.75 * math.log(0.75))], TERMS)


def test_kl_estimators_by_hand():
    logp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-2.0, -2.0])
    assert kl_estimate(logp, ref, "k1").tolist() == [1.0, 0.0]  # differences of small integers
    assert kl_estimate(logp, ref, "k2").tolist() == [0.5, 0.0]  # and their halved squares
    assert kl_estimate(logp, ref, "k3").tolist() == approx_fp32([math.exp(-1), 0.0], TERMS)
    with pytest.raises(ValueError):
        kl_estimate(logp, ref, "k4")


def test_kl_estimators_are_unbiased_on_samples():
    """k1 and k3 average to the exact KL(p || q) over samples from p; k3 is never negative."""
    p, q = torch.tensor([0.7, 0.2, 0.1]), torch.tensor([0.4, 0.4, 0.2])
    exact = (p * (p / q).log()).sum().item()
    n = 1_000_000
    x = torch.multinomial(p, n, replacement=True, generator=torch.Generator().manual_seed(0))
    lp, lq = p.log()[x], q.log()[x]
    # Monte Carlo: k1 = log(p/q) has standard deviation 0.574 under p (k3: less), so the mean of
    # n samples is within 5 sd = 5 x 0.574 / sqrt(n) = 2.9e-3 of the KL (0.184) but for a chance
    # of 6e-7; the mean is taken in float64, so summation adds nothing
    sd5 = 5 * 0.574 / math.sqrt(n)
    assert kl_estimate(lp, lq, "k1").double().mean().item() == pytest.approx(exact, abs=sd5)
    assert kl_estimate(lp, lq, "k3").double().mean().item() == pytest.approx(exact, abs=sd5)
    assert (kl_estimate(lp, lq, "k3") >= 0).all()


def test_grpo_loss_by_hand():
    logp = torch.zeros(2, 2)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    adv = torch.tensor([1.0, -2.0])
    # ratio 1 everywhere: per-token loss = -A; sequence means -1 and 2 -> .5; token mean 0
    assert grpo_loss(logp, logp, adv, mask).loss.item() == approx_fp32(0.5, TERMS, 2.0)
    assert grpo_loss(logp, logp, adv, mask, level="token").loss.item() == approx_fp32(
        0.0, TERMS, 2.0)
    ref = logp - 1.0  # d = 1 on every token: k3 = e^-1
    k3 = math.exp(-1)
    out = grpo_loss(logp, logp, adv, mask, ref_logp=ref, beta=0.1)
    assert out.loss.item() == approx_fp32(0.5 + 0.1 * k3, TERMS, 2.0)
    assert out.kl.item() == approx_fp32(k3, TERMS)
    out = grpo_loss(logp, logp, adv, mask, ref_logp=ref, beta=0.1, level="token")
    assert out.loss.item() == approx_fp32(0.1 * k3, TERMS, 2.0)


# --- parity with TRL ---------------------------------------------------------------------------


def _trl_grpo_loss(logp, old, ref, adv, mask, *, beta, eps_low, eps_high, loss_type):
    from trl import GRPOTrainer

    acc = SimpleNamespace(gather=lambda x: x, gather_for_metrics=lambda x: x,
                          reduce=lambda x, reduction="sum": x, num_processes=1,
                          sync_gradients=True)
    n, t_ = logp.shape
    fake = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, torch.zeros(n, t_), None),
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level="token",
        beta=beta, args=SimpleNamespace(use_bias_correction_kl=False, delta=None),
        loss_type=loss_type, epsilon_low=eps_low, epsilon_high=eps_high, use_vllm=False,
        model=SimpleNamespace(training=True), current_gradient_accumulation_steps=1,
        _entropy_bonus_enabled=False, aux_loss_enabled=False, accelerator=acc,
        _metrics={"train": defaultdict(list)})
    inputs = {"prompt_ids": torch.zeros(n, 1, dtype=torch.long),
              "prompt_mask": torch.ones(n, 1, dtype=torch.long),
              "completion_ids": torch.zeros(n, t_, dtype=torch.long), "completion_mask": mask,
              "advantages": adv, "old_per_token_logps": old, "ref_per_token_logps": ref}
    return GRPOTrainer._compute_loss(fake, None, inputs), fake._metrics["train"]


@pytest.mark.parametrize("level,loss_type", [("sequence", "grpo"), ("token", "bnpo")])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_grpo_loss_matches_trl(level, loss_type, beta):
    g = torch.Generator().manual_seed(0)
    n, t_ = 6, 5
    old = -torch.rand(n, t_, generator=g) * 3
    logp = old + torch.randn(n, t_, generator=g) * 0.3  # some ratios outside [0.8, 1.28]
    ref = old + torch.randn(n, t_, generator=g) * 0.2
    adv = torch.randn(n, generator=g)
    mask = torch.ones(n, t_, dtype=torch.long)
    mask[1, 3:] = 0
    mask[4, 1:] = 0
    ours = grpo_loss(logp, old, adv, mask, ref_logp=ref, beta=beta, clip_eps=0.2,
                     clip_eps_high=0.28, level=level)
    theirs, metrics = _trl_grpo_loss(logp, old, ref, adv, mask, beta=beta, eps_low=0.2,
                                     eps_high=0.28, loss_type=loss_type)
    # both sides in fp32: ratios and k3 of log-probs within 4 in size, masked means of <= 30
    # tokens (and of 6 sequences) - 30 + 6 + ~10 elementwise roundings
    terms = 46
    assert ours.loss.item() == approx_fp32(theirs.item(), terms, 4.0)
    assert ours.clip_frac.item() == approx_fp32(metrics["clip_ratio/region_mean"][0], terms)
    if beta:
        assert ours.kl.item() == approx_fp32(metrics["kl"][0], terms, 4.0)
