"""Structured pruning on tiny llamas: importance picks the redundant parts, removing parts
that contribute nothing leaves the outputs unchanged, and the result saves and reloads."""

import pytest
import torch

from lmlab.models.prune import (PruneSpec, apply_plan, collect_importance, non_embedding_params,
                                plan, prune)
from lmlab.errors import UserError

from ..tiny import varied


def batches(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 2000, (n, 3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[:, 0, 9:] = 0  # one padded row: its pad tokens must not count
    return [{"input_ids": i, "attention_mask": m} for i, m in zip(ids, mask)]


def logits(model, b):
    with torch.no_grad():
        return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits


def test_identity_block_scores_zero_and_is_dropped_without_changing_outputs():
    m = varied("llama4", 0.3)
    with torch.no_grad():  # block 2 writes nothing into the residual stream: an identity
        m.model.layers[2].self_attn.o_proj.weight.zero_()
        m.model.layers[2].mlp.down_proj.weight.zero_()
    small, p, imp = prune(m, PruneSpec(layers=3), batches())
    assert imp.layers[2] == pytest.approx(0.0, abs=1e-6)
    assert min(imp.layers[i] for i in (0, 1, 3)) > 0.01
    assert p.layers == [0, 1, 3] and small.config.num_hidden_layers == 3
    b = batches(1, seed=5)[0]
    torch.testing.assert_close(logits(small, b), logits(m, b), rtol=1e-5, atol=1e-5)


def test_silent_heads_and_mlp_channels_are_cut_without_changing_outputs():
    m = varied("llama", 0.3)  # H = 4, Hkv = 2 (2 heads per group), I = 128
    Dh = m.config.hidden_size // m.config.num_attention_heads
    with torch.no_grad():
        for layer in m.model.layers:
            layer.self_attn.o_proj.weight[:, Dh:3 * Dh] = 0  # heads 1 and 2 write nothing
            layer.mlp.down_proj.weight[:, ::2] = 0  # even channels write nothing
            layer.mlp.up_proj.weight[::2] *= 0.01  # and are quiet: lowest activations
    small, p, imp = prune(m, PruneSpec(heads=2, mlp=64), batches())
    assert p.heads == [[0, 3], [0, 3]]  # one per key/value group
    assert all(ch == list(range(1, 128, 2)) for ch in p.mlp)
    assert small.config.num_attention_heads == 2 and small.config.intermediate_size == 64
    assert small.model.layers[0].self_attn.q_proj.weight.shape == (2 * Dh, 64)
    b = batches(1, seed=6)[0]
    torch.testing.assert_close(logits(small, b), logits(m, b), rtol=1e-5, atol=1e-5)


def test_hidden_pruning_saves_and_reloads_with_plain_transformers(tmp_path):
    from transformers import AutoModelForCausalLM

    m = varied("llama4", 0.3)
    small, p, _ = prune(m, PruneSpec(layers=2, heads=2, mlp=32, hidden=48), batches())
    cfg = small.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.head_dim) == (48, 2, 16)
    assert small.get_input_embeddings().weight.shape == (m.config.vocab_size, 48)
    assert small.get_output_embeddings().weight is small.get_input_embeddings().weight  # tied
    assert non_embedding_params(small) < non_embedding_params(m) / 4
    small.save_pretrained(tmp_path / "s")
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "s").eval()
    b = batches(1, seed=7)[0]
    torch.testing.assert_close(logits(back, b), logits(small, b))
    # the weights are slices of the teacher's: embedding columns are the kept hidden channels
    torch.testing.assert_close(small.get_input_embeddings().weight,
                               m.get_input_embeddings().weight[:, p.hidden])


def test_pruned_model_decodes_on_the_fast_path():
    from lmlab.infer.decode import decode
    from lmlab.infer.fastpath import LlamaStep
    from lmlab.infer.sampling import SamplingParams

    small, _, _ = prune(varied("llama4", 0.3), PruneSpec(layers=3, heads=2, hidden=48), batches())
    assert LlamaStep.supports(small)
    ids = torch.tensor([[5, 6, 7, 8]])
    params = SamplingParams(temperature=0.0, max_new_tokens=6, ignore_eos=True)
    fast = decode(small, ids, None, params).tokens[0]
    slow = decode(small, ids, None, params, fast=False).tokens[0]
    assert fast == slow and len(fast) == 6


def test_bad_targets_are_reported_together():
    m = varied("llama", 0.3)
    imp = collect_importance(m, batches(1))
    with pytest.raises(UserError) as e:
        plan(imp, PruneSpec(layers=5, heads=3), m.config)
    assert "prune_layers" in str(e.value) and "prune_heads" in str(e.value)
    keep_all = apply_plan(m, plan(imp, PruneSpec(), m.config))
    b = batches(1)[0]
    torch.testing.assert_close(logits(keep_all, b), logits(m, b))
