"""PPO and GRPO learn a known toy reward (the number of times token 5 appears in an 8-token
response) on a tiny 16-token-vocabulary llama, through the stages' own update functions.
A uniform policy scores 8/16 = 0.5; both must more than double that in 20 updates."""

from types import SimpleNamespace

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lmlab.infer.sampling import SamplingParams
from lmlab.rl.rollout import Rollout, sample, score
from lmlab.rl.value import ActorCritic, ValueHead
from lmlab.train.loop import build_optimizer

TARGET, VOCAB, LEN = 5, 16, 8


def _toy_model():
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                      bos_token_id=0, eos_token_id=1, pad_token_id=0, tie_word_embeddings=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return LlamaForCausalLM(cfg)


def _rollout(ac, ref, prompts, k, g):
    params = SamplingParams(max_new_tokens=LEN, ignore_eos=True)
    resp, finish = sample(ac.actor, prompts, k, params, generator=g, pad_id=0, eos_ids=[])
    ro = Rollout([{}] * len(resp), [p for p in prompts for _ in range(k)], resp, finish)
    ro.rewards = torch.tensor([float(sum(t == TARGET for t in r)) for r in resp])
    return score(ro, ac.actor, value_head=ac.critic, ref_model=ref, pad_id=0)


def _train(stage, updates=20, **kw):
    import copy

    torch.manual_seed(0)
    actor = _toy_model()
    ref = copy.deepcopy(actor).eval()
    critic = ValueHead(32) if stage.__name__.endswith("ppo") else None
    ac = ActorCritic(actor, critic)
    cfg = stage.Config(model="toy", lr=3e-3, batch_size=8, clip_grad=1.0, **kw)
    on = SimpleNamespace(cfg=cfg, model=ac, optimizer=build_optimizer(ac, cfg), run=None)
    g = torch.Generator().manual_seed(0)
    prompts = [[2 + i, 3 + i, 4 + i] for i in range(4)]
    means = []
    for u in range(updates):
        ro = _rollout(ac, ref, prompts, cfg.group_size, g)
        means.append(float(ro.rewards.mean()))
        yield_update(stage, on, ro, u)
    return means


def yield_update(stage, on, ro, u):
    cfg = on.cfg
    if stage.__name__.endswith("grpo"):
        stage.update(on, ro, stage.advantages(cfg, ro.rewards), u)
        return
    from lmlab.rl.advantages import gae, whiten

    rewards, _ = stage.token_rewards(ro, cfg.kl_coef, cfg)
    adv, returns = gae(rewards, ro.values, ro.mask, gamma=cfg.gamma, lam=cfg.lam)
    stage.update(on, ro, whiten(adv, ro.mask), returns, u)


@pytest.mark.parametrize("name", ["ppo", "grpo"])
def test_learns_the_token_count_reward(name):
    import importlib

    stage = importlib.import_module(f"lmlab.stages.{name}")
    kw = dict(group_size=4, epochs=2, kl_coef=0.01) if name == "ppo" else \
        dict(group_size=4, epochs=2, beta=0.01)
    means = _train(stage, **kw)
    print(name, [round(m, 2) for m in means])
    first, last = sum(means[:2]) / 2, sum(means[-5:]) / 5
    assert first < 1.0, means  # near the uniform policy's 0.5
    assert last > 3 * first and last > 3.0, means
