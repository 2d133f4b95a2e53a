"""The RL lab's pure functions by hand: TD targets, double DQN, clipped double Q, SAC's
temperature loss, the soft target update, the PPO clip on a flat batch, GAE with episode ends
and a bootstrap (equal to the LLM side's function and to Stable-Baselines3's), the replay buffer,
the across-seed confidence interval; DQN's and SAC's hand-derived gradients (and the critic
ensemble's) equal to autograd's."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lmlab.agents.buffer import ReplayBuffer
from lmlab.agents.dqn import dqn_loss, huber_grad
from lmlab.agents.evaluation import mean_ci95
from lmlab.agents.nets import (
    Ensemble,
    ensemble_backward,
    ensemble_forward,
    mlp,
    relu_mlp_backward,
    relu_mlp_forward,
    soft_update,
)
from lmlab.agents.sac import critic_grad, min_q_action_grad, min_q_grad, squashed_grads
from lmlab.losses.policy import ppo_policy_loss
from lmlab.losses.td import clipped_double_q, double_q_target, sac_alpha_loss, td_target
from lmlab.rl.advantages import gae

from ..tolerance import fp32_tol


def test_td_target_by_hand():
    r, v = torch.tensor([1.0, 1.0, -2.0]), torch.tensor([10.0, 10.0, 4.0])
    term = torch.tensor([0.0, 1.0, 0.0])
    # 1 + 0.9 * 10 = 10; terminated: 1; -2 + 0.9 * 4 = 1.6
    assert td_target(r, v, term, 0.9).tolist() == pytest.approx([10.0, 1.0, 1.6], abs=1e-6)
    assert td_target(0.5, 2.0, 0.0, 0.5) == 1.5  # plain floats (the tabular agents)


def test_double_dqn_target_uses_the_online_argmax_and_the_target_value():
    online = torch.tensor([[1.0, 5.0, 2.0], [3.0, 0.0, 1.0]])  # argmax: 1, 0
    target = torch.tensor([[9.0, 4.0, 7.0], [6.0, 8.0, 0.0]])  # plain DQN would take 9 and 8
    y = double_q_target(torch.tensor([1.0, 0.0]), online, target, torch.tensor([0.0, 0.0]), 0.5)
    assert y.tolist() == pytest.approx([1 + 0.5 * 4.0, 0.5 * 6.0])
    y = double_q_target(torch.tensor([1.0, 0.0]), online, target, torch.tensor([1.0, 0.0]), 0.5)
    assert y.tolist() == pytest.approx([1.0, 3.0])


def test_clipped_double_q_and_soft_value():
    q1, q2 = torch.tensor([1.0, 4.0]), torch.tensor([2.0, 3.0])
    assert clipped_double_q(q1, q2).tolist() == [1.0, 3.0]
    # SAC: min - alpha log pi; log pi = -1, -2 with alpha 0.5 -> +0.5, +1
    v = clipped_double_q(q1, q2, torch.tensor([-1.0, -2.0]), 0.5)
    assert v.tolist() == pytest.approx([1.5, 4.0])


def test_sac_temperature_loss_value_and_direction():
    log_alpha = torch.tensor([math.log(0.5)], requires_grad=True)
    logp = torch.tensor([-0.2, 0.4])  # entropy estimate -mean(logp) = -0.1
    loss = sac_alpha_loss(log_alpha, logp, target_entropy=-1.0)
    # -(log 0.5) * mean(logp + H_target) = -(log 0.5) * (0.1 - 1)
    assert loss.item() == pytest.approx(-math.log(0.5) * (0.1 - 1.0), abs=1e-6)
    loss.backward()
    # entropy -0.1 is above the target -1: the gradient step (-grad) lowers alpha
    assert log_alpha.grad.item() == pytest.approx(0.9, abs=1e-6)


def test_soft_update_by_hand():
    src, tgt = mlp([2, 3, 1]), mlp([2, 3, 1])
    before = [p.clone() for p in tgt.parameters()]
    soft_update(tgt, src, 0.25)
    for b, s, t in zip(before, src.parameters(), tgt.parameters()):
        assert torch.allclose(t, 0.75 * b + 0.25 * s, atol=1e-6)
    soft_update(tgt, src, 1.0)
    assert all(torch.equal(s, t) for s, t in zip(src.parameters(), tgt.parameters()))


def test_ppo_clip_on_a_flat_batch_by_hand():
    """The LLM side's clipped surrogate, as the agents call it: (B,) tensors, a mask of ones."""
    old = torch.zeros(3)
    logp = torch.log(torch.tensor([1.5, 0.5, 1.1]))  # ratios 1.5, 0.5, 1.1
    adv = torch.tensor([1.0, -2.0, 3.0])
    out = ppo_policy_loss(logp, old, adv, torch.ones(3), clip_eps=0.2)
    # -min(1.5, 1.2) * 1 = -1.2; -min(0.5 * -2, 0.8 * -2) = 1.6; -min(3.3, 3.3) = -3.3
    assert out.loss.item() == pytest.approx((-1.2 + 1.6 - 3.3) / 3, abs=1e-6)
    assert out.clip_frac.item() == pytest.approx(2 / 3)


def test_gae_with_episode_ends_and_bootstrap_by_hand():
    # one env, 3 steps; the episode ends after step 1; step 2 starts a new one, bootstrap 4
    r = torch.tensor([[1.0, 2.0, 3.0]])
    v = torch.tensor([[0.5, 1.0, 2.0]])
    dones = torch.tensor([[0.0, 1.0, 0.0]])
    adv, ret = gae(r, v, torch.ones(1, 3), gamma=0.5, lam=0.5, dones=dones,
                   last_value=torch.tensor([4.0]))
    d2 = 3 + 0.5 * 4 - 2  # 3.0
    d1 = 2 - 1.0  # ends: no bootstrap
    d0 = 1 + 0.5 * 1.0 - 0.5  # 1.0
    a1 = d1
    a0 = d0 + 0.25 * a1
    assert adv[0].tolist() == pytest.approx([a0, a1, d2])
    assert ret[0].tolist() == pytest.approx([a0 + 0.5, a1 + 1.0, d2 + 2.0])


def test_gae_of_agents_equals_the_llm_side():
    """An episode that ends at the last step, given as ``dones`` (agents) or as a response mask
    (LLM PPO), is one computation."""
    g = torch.Generator().manual_seed(0)
    r, v = torch.randn(4, 7, generator=g), torch.randn(4, 7, generator=g)
    llm_adv, llm_ret = gae(r, v, torch.ones(4, 7), gamma=0.97, lam=0.9)
    dones = torch.zeros(4, 7)
    dones[:, -1] = 1
    adv, ret = gae(r, v, torch.ones(4, 7), gamma=0.97, lam=0.9, dones=dones,
                   last_value=torch.randn(4, generator=g))  # ignored: every episode ended
    tol = fp32_tol(4 * 7, scale=10.0)  # 7 steps of a few roundings on values of a few units
    assert torch.allclose(adv, llm_adv, atol=tol) and torch.allclose(ret, llm_ret, atol=tol)
    # right-padded responses: the mask cuts each at its length, in both forms
    mask = torch.ones(4, 7)
    mask[1, 4:] = 0
    dones = torch.zeros(4, 7)
    dones[:, -1] = 1
    dones[1, 3] = 1
    a1, _ = gae(r, v, mask, gamma=0.97, lam=0.9)
    a2, _ = gae(r, v, mask, gamma=0.97, lam=0.9, dones=dones)
    assert torch.allclose(a1, a2, atol=tol)


def test_gae_equals_stable_baselines3():
    gym = pytest.importorskip("gymnasium")
    buffers = pytest.importorskip("stable_baselines3.common.buffers")
    RolloutBuffer = buffers.RolloutBuffer

    T, n, gamma, lam = 6, 3, 0.99, 0.95
    rng = np.random.default_rng(1)
    rew = rng.normal(size=(T, n)).astype(np.float32)
    val = rng.normal(size=(T, n)).astype(np.float32)
    dones = (rng.random((T, n)) < 0.3).astype(np.float32)  # episode ended at step t
    last = rng.normal(size=n).astype(np.float32)
    buf = RolloutBuffer(T, gym.spaces.Box(-1, 1, (1,)), gym.spaces.Discrete(2), "cpu",
                        gae_lambda=lam, gamma=gamma, n_envs=n)
    buf.rewards[:], buf.values[:] = rew, val
    buf.episode_starts[0] = 0
    buf.episode_starts[1:] = dones[:-1]  # SB3 stores "this step starts an episode"
    buf.compute_returns_and_advantage(torch.from_numpy(last), dones[-1])
    adv, ret = gae(torch.from_numpy(rew.T), torch.from_numpy(val.T), torch.ones(n, T),
                   gamma=gamma, lam=lam, dones=torch.from_numpy(dones.T),
                   last_value=torch.from_numpy(last))
    tol = fp32_tol(4 * T, scale=10.0)
    assert np.allclose(adv.T.numpy(), buf.advantages, rtol=0, atol=tol)
    assert np.allclose(ret.T.numpy(), buf.returns, rtol=0, atol=tol)


def test_replay_buffer_wraps_and_samples_what_it_holds():
    buf = ReplayBuffer(5, obs_dim=1, act_shape=())
    for t in range(3):  # two envs per step: 6 rows into 5 slots
        o = np.array([[2 * t], [2 * t + 1]], np.float32)
        buf.add(o, np.array([t, t]), np.array([t, t]), o + 100, np.array([0, 1]))
    assert buf.size == 5 and buf.pos == 1
    assert sorted(buf.obs[:, 0].tolist()) == [1, 2, 3, 4, 5]  # row 0 overwritten by row 5
    b = buf.sample(64, np.random.default_rng(0))
    assert set(b["obs"][:, 0].tolist()) <= {1, 2, 3, 4, 5}
    assert torch.equal(b["next_obs"], b["obs"] + 100)
    again = buf.sample(64, np.random.default_rng(0))
    assert torch.equal(b["obs"], again["obs"])  # the loop's generator decides
    copy = ReplayBuffer(5, obs_dim=1, act_shape=())
    copy.load_state_dict(buf.state_dict())
    assert torch.equal(copy.sample(8, np.random.default_rng(3))["obs"],
                       buf.sample(8, np.random.default_rng(3))["obs"])


def test_ensemble_members_are_independent_mlps():
    ens = Ensemble(2, [3, 5, 1])
    x = torch.randn(4, 3)
    out = ens(x)  # (2, 4, 1)
    for k in range(2):
        h = torch.relu(x @ ens.weights[0][k] + ens.biases[0][k])
        assert torch.allclose(out[k], h @ ens.weights[1][k] + ens.biases[1][k], rtol=0,
                              atol=fp32_tol(2 * 5, scale=5.0))


def test_mean_ci95_by_hand():
    m, h = mean_ci95([1.0, 2.0, 3.0])
    # sd 1, t(2) = 4.303, n = 3
    assert m == 2.0 and h == pytest.approx(4.303 / math.sqrt(3), abs=1e-9)
    assert mean_ci95([5.0]) == (5.0, 0.0)


def test_huber_grad_by_hand():
    q, y = torch.tensor([0.0, 0.0, 0.0, 0.0]), torch.tensor([0.5, -3.0, 2.0, -0.25])
    # errors q - y = -0.5, 3, -2, 0.25: inside |e| < 1 the error, outside its sign; / B = 4
    assert huber_grad(q, y).tolist() == [-0.125, 0.25, -0.25, 0.0625]


def test_dqn_hand_gradient_equals_autograd():
    torch.manual_seed(0)
    net = mlp([3, 16, 16, 2])
    obs, act, y = torch.randn(32, 3), torch.randint(0, 2, (32, 1)), torch.randn(32) * 2
    dqn_loss(net(obs).gather(1, act).squeeze(1), y).backward()
    with torch.no_grad():
        acts = relu_mlp_forward(net, obs)
        assert torch.allclose(acts[-1], net(obs), rtol=0, atol=fp32_tol(16, scale=4.0))
        q = acts[-1].gather(1, act).squeeze(1)
        d_out = torch.zeros_like(acts[-1]).scatter_(1, act, huber_grad(q, y).unsqueeze(1))
        hand = relu_mlp_backward(net, acts, d_out)
    params = list(net.parameters())
    assert [g.shape for g in hand] == [p.shape for p in params]
    for g, p in zip(hand, params):  # a sum over the batch (32) after two over the width (16)
        assert torch.allclose(g, p.grad, rtol=0, atol=fp32_tol(32 + 2 * 16, scale=4.0))


def test_ensemble_hand_gradient_equals_autograd():
    torch.manual_seed(0)
    ens = Ensemble(2, [5, 16, 16, 1])
    x, d_out = torch.randn(32, 5, requires_grad=True), torch.randn(2, 32, 1)
    (ens(x) * d_out).sum().backward()
    with torch.no_grad():
        acts = ensemble_forward(ens, x.detach())
        assert torch.allclose(acts[-1], ens(x), rtol=0, atol=fp32_tol(2 * 16, scale=4.0))
        grads, dx = ensemble_backward(ens, acts, d_out, input_cols=slice(3, None))
        none, dx_only = ensemble_backward(ens, acts, d_out, params=False, input_cols=slice(3, 5))
    params = list(ens.parameters())
    assert [g.shape for g in grads] == [p.shape for p in params] and none is None
    tol = fp32_tol(32 + 2 * 16, scale=4.0)  # a sum over the batch after two over the width
    for g, p in zip(grads, params):
        assert torch.allclose(g, p.grad, rtol=0, atol=tol)
    assert torch.allclose(dx, x.grad[:, 3:], rtol=0, atol=tol) and torch.equal(dx, dx_only)
    # the actor's d/d action of -mean min_k Q_k: each row through its smaller critic only
    for sizes in ([5, 16, 16, 1], [5, 16, 1], [5, 1]):
        ens = Ensemble(2, sizes)
        acts = ensemble_forward(ens, x.detach())
        dense = ensemble_backward(ens, acts, min_q_grad(acts[-1].squeeze(-1)).unsqueeze(-1),
                                  params=False, input_cols=slice(3, None))[1]
        sparse = min_q_action_grad(ens, acts, slice(3, None))
        assert torch.allclose(sparse, dense, rtol=0, atol=tol) and sparse.abs().sum() > 0


def test_sac_gradient_pieces_by_hand():
    q, y = torch.tensor([[1.0, 5.0], [3.0, 2.0]]), torch.tensor([2.0, 2.0])
    # (q - y) / B with B = 2
    assert critic_grad(q, y).tolist() == [[-0.5, 1.5], [0.5, 0.0]]
    # -1/B on each column's smaller critic: row 0 for column 0, row 1 for column 1
    assert min_q_grad(q).tolist() == [[-0.5, 0.0], [0.0, -0.5]]
    # a = 0.5, noise 0.2, g_a = 1, w = 0.1: d_u = 1 * 0.75 + 2 * 0.1 * 0.5 = 0.85;
    # d_log_std = 0.85 * 0.2 - 0.1 = 0.07 inside the clamp, 0 outside it
    a, noise, g = torch.tensor([[0.5], [0.5]]), torch.tensor([[0.2], [0.2]]), torch.ones(2, 1)
    d_mu, d_ls = squashed_grads(a, noise, torch.tensor([[0.0], [3.0]]), g, 0.1)
    assert d_mu.flatten().tolist() == pytest.approx([0.85, 0.85], abs=1e-6)
    assert d_ls.flatten().tolist() == pytest.approx([0.07, 0.0], abs=1e-6)


def test_sac_hand_update_gradients_equal_autograd():
    """One SAC update with lr 0 (the nets stay put, the gradients stay in .grad) against the
    same losses differentiated by autograd, on the same batch and the same noise."""
    import copy
    from types import SimpleNamespace

    import gymnasium as gym

    from lmlab.agents.sac import LOG_STD, SACAgent, squashed_logp

    obs_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    act_space = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
    cfg = SimpleNamespace(hidden=[16, 16], lr=0.0, alpha=None, gamma=0.9, tau=0.005)
    torch.manual_seed(0)
    agent = SACAgent(obs_space, act_space, cfg, seed=0)
    for p in agent.critic_t.parameters():  # targets apart from the critics
        p.data.add_(0.1 * torch.randn_like(p))
    ref = copy.deepcopy(agent)
    n = 32
    b = {"obs": torch.randn(n, 3), "act": torch.rand(n, 2) * 2 - 1, "rew": torch.randn(n),
         "next_obs": torch.randn(n, 3), "term": (torch.rand(n) < 0.2).float()}
    torch.manual_seed(1)
    agent.update(b)
    torch.manual_seed(1)
    mu, ls = ref.actor(torch.cat([b["obs"], b["next_obs"]])).chunk(2, dim=-1)
    ls = ls.clamp(*LOG_STD)
    u = mu + ls.exp() * torch.randn_like(mu)
    a, logp = torch.tanh(u), squashed_logp(u, mu, ls)
    alpha = ref.log_alpha.detach().exp()
    sac_alpha_loss(ref.log_alpha, logp[:n], ref.target_entropy).backward()
    with torch.no_grad():
        q_t = ref.critic_t(torch.cat([b["next_obs"], a[n:]], 1)).squeeze(-1)
        y = td_target(b["rew"], clipped_double_q(q_t[0], q_t[1], logp[n:], alpha), b["term"],
                      cfg.gamma)
    q = ref.critic(torch.cat([b["obs"], b["act"]], 1)).squeeze(-1)
    (0.5 * (F.mse_loss(q[0], y) + F.mse_loss(q[1], y))).backward()
    q_pi = ref.critic(torch.cat([b["obs"], a[:n]], 1)).squeeze(-1)
    actor_loss = (alpha * logp[:n] - torch.min(q_pi[0], q_pi[1])).mean()
    actor_grads = torch.autograd.grad(actor_loss, list(ref.actor.parameters()))
    tol = fp32_tol(2 * n + 4 * 16, scale=8.0)  # sums over the batch, the widths, two nets
    assert torch.allclose(agent.log_alpha.grad, ref.log_alpha.grad, rtol=0, atol=tol)
    for mine, theirs in zip(agent.critic.parameters(), ref.critic.parameters()):
        assert torch.allclose(mine.grad, theirs.grad, rtol=0, atol=tol)
    for mine, theirs in zip(agent.actor.parameters(), actor_grads):
        assert torch.allclose(mine.grad, theirs, rtol=0, atol=tol)
    assert any(g.abs().max() > 100 * tol for g in actor_grads)  # not all (near) zero


@pytest.mark.parametrize("n_envs, syncs", [(1, [10, 20, 30, 40]), (4, [8, 16, 24, 32, 40]),
                                           (16, [16, 32])])
def test_dqn_target_sync_every_target_update_env_steps_as_sb3_counts_them(n_envs, syncs):
    """SB3 syncs every max(target_update // n_envs, 1) vector steps; so does DQNAgent."""
    from types import SimpleNamespace

    import gymnasium as gym

    from lmlab.agents.dqn import DQNAgent

    cfg = SimpleNamespace(hidden=[4], lr=1e-3, n_envs=n_envs, target_update=10, tau=1.0)
    agent = DQNAgent(gym.spaces.Box(-1.0, 1.0, (2,)), gym.spaces.Discrete(2), cfg, seed=0)
    seen = []
    for step in range(n_envs, 41, n_envs):
        agent.step = step
        with torch.no_grad():
            agent.q[0].bias.add_(1.0)  # the online net moves every step
        agent.on_step()
        if torch.equal(agent.q_target[0].bias, agent.q[0].bias):
            seen.append(step)
    assert seen == syncs


def test_mse_loss_and_grad_by_hand():
    from lmlab.agents.dqn import mse_grad

    q, y = torch.tensor([0.0, 0.0, 0.0, 0.0]), torch.tensor([0.5, -3.0, 2.0, -0.25])
    # errors -0.5, 3, -2, 0.25: mean of squares (0.25 + 9 + 4 + 0.0625) / 4; grad 2 e / 4
    assert dqn_loss(q, y, "mse").item() == pytest.approx(13.3125 / 4, rel=1e-7)
    assert mse_grad(q, y).tolist() == [-0.25, 1.5, -1.0, 0.125]
    assert dqn_loss(q, y, "huber").item() == pytest.approx((0.125 + 2.5 + 1.5 + 0.03125) / 4)


def _dqn(**kw):
    from types import SimpleNamespace

    import gymnasium as gym

    from lmlab.agents.dqn import DQNAgent

    cfg = SimpleNamespace(**{"hidden": [4], "lr": 1e-3, "n_envs": 1, "target_update": 1,
                             "tau": 1.0, "max_steps": 1000, "schedule": "constant", **kw})
    return DQNAgent(gym.spaces.Box(-1.0, 1.0, (2,)), gym.spaces.Discrete(2), cfg, seed=0)


@pytest.mark.parametrize("schedule, lrs", [("linear", [1e-3, 7.5e-4, 1e-4, 0.0]),
                                           ("constant", [1e-3, 1e-3, 1e-3, 1e-3])])
def test_dqn_lr_schedule_values(schedule, lrs):
    """lr x the fraction of steps left, set before each training round (SB3's lin schedule)."""
    agent = _dqn(schedule=schedule)
    seen = []
    for step in (0, 250, 900, 1000):
        agent.step = step
        agent.round_start()
        seen.append(agent.opt.param_groups[0]["lr"])
    assert seen == pytest.approx(lrs, abs=1e-12)


def test_dqn_polyak_target_update_by_hand():
    agent = _dqn(tau=0.25)
    with torch.no_grad():
        for p in agent.q_target.parameters():
            p.fill_(2.0)
        for p in agent.q.parameters():
            p.fill_(6.0)
    agent.step = 1
    agent.on_step()  # 0.75 * 2 + 0.25 * 6 = 3, then 0.75 * 3 + 0.25 * 6 = 3.75
    assert all(torch.all(p == 3.0) for p in agent.q_target.parameters())
    agent.step = 2
    agent.on_step()
    assert all(torch.all(p == 3.75) for p in agent.q_target.parameters())


class _Coins:
    """A stand-in generator: ``random`` gives the listed coins, ``integers`` always 7."""

    def __init__(self, coins):
        self.coins = np.array(coins)

    def random(self, n=None):
        return self.coins[0] if n is None else self.coins[:n]

    def integers(self, lo, hi, n):
        return np.full(n, 7)


def test_epsilon_greedy_one_coin_per_env_or_per_step():
    from lmlab.agents.dqn import epsilon_greedy

    greedy = np.array([0, 1, 0])
    # per env: coins 0.3, 0.7, 0.1 against eps 0.5 -> envs 0 and 2 explore
    assert epsilon_greedy(greedy, 0.5, 8, _Coins([0.3, 0.7, 0.1]), "env").tolist() == [7, 1, 7]
    # one coin for the step (SB3): 0.3 < 0.5 -> every env explores; 0.7 -> none does
    assert epsilon_greedy(greedy, 0.5, 8, _Coins([0.3]), "step").tolist() == [7, 7, 7]
    assert epsilon_greedy(greedy, 0.5, 8, _Coins([0.7]), "step").tolist() == [0, 1, 0]
