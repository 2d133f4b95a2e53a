"""Rollouts: reproducible sampling, teacher-forced log-probs equal to the decode loop's, the
reference (LoRA disabled == frozen copy), the value head, reward functions."""

import copy
from types import SimpleNamespace

import pytest
import torch

from lmlab.infer.sampling import SamplingParams
from lmlab.models.tiny import PRESETS
from lmlab.rl.rollout import Rollout, build_batch, response_forward, sample, score
from tests.tolerance import forward_tol


def _prompts(tokenizer, n=3):
    from lmlab.data import encode_prompt

    return [encode_prompt(tokenizer, f"What is {i} + {i}?") for i in range(n)]


def _perturb_lora(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def test_sampling_is_reproducible_from_the_generator_state(tiny_model, tokenizer):
    prompts, params = _prompts(tokenizer), SamplingParams(max_new_tokens=6)
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    a, _ = sample(tiny_model, prompts, 2, params, generator=g, pad_id=tokenizer.pad_token_id)
    b, _ = sample(tiny_model, prompts, 2, params, generator=g, pad_id=tokenizer.pad_token_id)
    g.set_state(state)
    c, reasons = sample(tiny_model, prompts, 2, params, generator=g,
                        pad_id=tokenizer.pad_token_id)
    assert len(a) == 6 and a == c and a != b
    assert a[0] != a[1]  # the k completions of one prompt differ
    assert set(reasons) <= {"eos", "length"}


def test_teacher_forced_logps_equal_the_decode_loop(tokenizer):
    """The rollout batch layout (left-padded prompts, right-padded responses) gives the same
    log-probs the KV-cache decode loop saw while sampling."""
    from lmlab.infer.decode import decode, left_pad
    from tests.tiny import varied

    model = varied()
    prompts = _prompts(tokenizer, 4)
    prompts[1] = prompts[1][:5]  # uneven prompt lengths -> left padding
    ids, mask = left_pad(prompts, tokenizer.pad_token_id)
    out = decode(model, ids, mask, SamplingParams(max_new_tokens=7, logprobs=True),
                 generator=torch.Generator().manual_seed(0))
    batch = build_batch(prompts, out.tokens, tokenizer.pad_token_id)
    with torch.no_grad():
        logp, values, _ = response_forward(model, batch)
    assert values is None
    for i, lps in enumerate(out.logprobs):
        assert logp[i, :len(lps)].tolist() == pytest.approx(lps, abs=1e-4)
        assert (logp[i, len(lps):] == 0).all() and batch["response_mask"][i].sum() == len(lps)


def test_lora_reference_equals_frozen_copy(tiny_model, tokenizer):
    from lmlab.models.adapters import add_lora
    from lmlab.rl.rollout import reference_logps

    frozen = copy.deepcopy(tiny_model).eval()
    policy = add_lora(tiny_model, r=4, alpha=8, dropout=0.0, targets=[])
    _perturb_lora(policy)
    prompts = _prompts(tokenizer)
    resp, _ = sample(policy, prompts, 1, SamplingParams(max_new_tokens=5),
                     generator=torch.Generator().manual_seed(0), pad_id=tokenizer.pad_token_id)
    batch = build_batch(prompts, resp, tokenizer.pad_token_id)
    via_adapter = reference_logps(policy, batch)
    via_copy = reference_logps(policy, batch, ref_model=frozen)
    assert torch.allclose(via_adapter, via_copy, atol=1e-5)
    with torch.no_grad():
        assert not torch.allclose(response_forward(policy, batch)[0], via_copy, atol=1e-3)


def test_value_head_reads_only_the_past(tiny_model, tokenizer):
    from lmlab.rl.value import add_value_head

    ac = add_value_head(tiny_model)
    prompts = _prompts(tokenizer, 2)
    ro = Rollout([{}, {}], prompts, [[5, 6, 7, 8], [5, 6, 9]], ["length", "eos"])
    score(ro, ac.actor, value_head=ac.critic, use_reference=False, pad_id=tokenizer.pad_token_id)
    assert ro.values.shape == (2, 4) and (ro.values == 0).all()  # zero-initialised head
    with torch.no_grad():
        ac.critic.linear.weight.normal_()
    a = response_forward(ac.actor, build_batch(prompts, [[5, 6, 7, 8], [5, 6, 9]], 2),
                         ac.critic)[1]
    b = response_forward(ac.actor, build_batch(prompts, [[5, 6, 7, 1], [5, 6, 1]], 2),
                         ac.critic)[1]
    # the value at position j sees the response tokens before j only
    assert torch.allclose(a[0], b[0], atol=1e-5) and torch.allclose(a[1, :3], b[1, :3], atol=1e-5)
    assert {n.split(".")[0] for n, p in ac.named_parameters() if p.requires_grad} == \
        {"actor", "critic"}


def test_shared_prompt_forward_equals_the_full_forward_values_and_gradients(tokenizer):
    """Sequences that share a prompt run it once (shared_prompt_hidden): the same log-probs,
    values and LoRA + value-head gradients as one forward over every (prompt + response), for
    shuffled rows of uneven prompts and responses."""
    from lmlab.models.adapters import add_lora
    from lmlab.rl.rollout import shared_prompt_hidden
    from lmlab.rl.value import add_value_head
    from lmlab.models.heads import decoder_of
    from tests.tiny import varied

    torch.manual_seed(0)
    policy = add_lora(varied(), r=4, alpha=8, dropout=0.0, targets=[])
    _perturb_lora(policy)
    ac = add_value_head(policy)
    with torch.no_grad():
        ac.critic.linear.weight.normal_()
    prompts = _prompts(tokenizer, 2)
    prompts[1] = prompts[1][:4]  # uneven: left padding
    order = [0, 1, 0, 0, 1, 1]  # the groups interleaved, as a shuffled minibatch is
    resp = [[5, 6, 7, 8, 9], [5], [11, 12], [7, 7, 7, 7, 7], [13, 14, 15], [9, 9]]
    batch = build_batch([prompts[i] for i in order], resp, tokenizer.pad_token_id)
    assert shared_prompt_hidden(decoder_of(policy), build_batch(prompts, resp[:2], 2)) is None

    def run(share):
        ac.zero_grad()
        logp, values, _ = response_forward(ac.actor, batch, ac.critic, share_prompts=share)
        ((logp * batch["response_mask"]).sum() + values.square().mean()).backward()
        grads = {n: p.grad.clone() for n, p in ac.named_parameters() if p.requires_grad}
        return logp.detach(), values.detach(), grads

    (la, va, ga), (lb, vb, gb) = run(True), run(False)
    # the prompts run at another batch shape: the forward's roundings, relative to the largest
    # value compared (tests/tolerance.py); a log-prob carries its logit's and its normaliser's
    rel = 2 * forward_tol(SimpleNamespace(**PRESETS["llama"]), batch["input_ids"].shape[1])
    torch.testing.assert_close(la, lb, rtol=0, atol=rel * float(lb.abs().max()))
    torch.testing.assert_close(va, vb, rtol=0, atol=rel * float(vb.abs().max()))
    assert len(ga) > 4 and ga.keys() == gb.keys()
    for n in ga:  # fp32 rounding of different GEMM shapes: compare whole tensors
        assert (ga[n] - gb[n]).norm() <= 1e-4 * gb[n].norm() + 1e-7, n
    assert any(ga[n].abs().sum() > 0 for n in ga if "lora_A" in n)


def test_reward_functions():
    from lmlab.rl.rewards import build_rewards, combine, format_reward, shape

    assert shape(" 936<|im_end|>") == "0" and shape("The answer is 936.") == "a a a 0."
    rows = [{"prompt": "What is 1 + 2?", "answer": "3", "task": "add"}] * 4
    texts = ["3", "The answer is 3.", "4", "3"]
    finish = ["eos", "eos", "eos", "length"]
    assert format_reward(rows, texts, [[1]] * 4, finish) == [1.0, 0.0, 1.0, 0.0]
    fns = build_rewards(["task", "format", "token:7"])
    total, parts = combine(fns, {"task": 1.0, "format": 0.5, "token:7": 2.0}, rows, texts,
                           [[7, 7], [1], [7], []], finish)
    assert parts["task"] == [1.0, 1.0, 0.0, 1.0]
    assert parts["token:7"] == [2.0, 0.0, 1.0, 0.0]
    assert total == [1 + 0.5 + 4, 1.0, 0.5 + 2, 1.0]


def test_rollouts_decode_with_the_weights_asked_for(tokenizer, monkeypatch):
    """``decode_weights`` reaches the decoder on a CPU (``pack`` = the precision), and a
    LoRA policy's rollouts at int8 run (the folded W + BA is what gets rounded)."""
    from lmlab.infer import decode as dec
    from lmlab.infer.fastpath import unwrap
    from lmlab.models.adapters import add_lora
    from tests.tiny import varied

    seen, real = [], dec.decode
    monkeypatch.setattr("lmlab.rl.rollout.decode",
                        lambda *a, **kw: seen.append(kw.get("pack")) or real(*a, **kw))
    policy = add_lora(varied(), r=4, alpha=8, dropout=0.0, targets=[]).eval()
    _perturb_lora(policy)
    g = torch.Generator().manual_seed(0)
    params = SamplingParams(max_new_tokens=4, ignore_eos=True)
    out, _ = sample(policy, _prompts(tokenizer, 2), 2, params, generator=g,
                    pad_id=tokenizer.pad_token_id, decode_weights="int8")
    assert seen == ["int8"] and len(out) == 4 and all(len(r) == 4 for r in out)
    lin = unwrap(policy)._lmlab_packed  # the folded LoRA layers, packed at int8
    assert lin.weights == "int8" and lin.count == 7 * policy.config.num_hidden_layers + 1
