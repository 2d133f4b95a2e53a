"""The from-scratch attention + RoPE equals transformers' LlamaAttention: a tiny Llama's first
layer's weights are copied in and both see the same hidden states (captured by a hook inside
the real model, so the mask and positions are the model's own)."""

import pytest
import torch

from lmlab.scratch import attention as A
from tests.tolerance import fp32_tol, sum_terms


def _llama(heads: int, kv_heads: int, width: int = 64, theta: float = 10000.0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=width, num_attention_heads=heads, num_key_value_heads=kv_heads,
                      intermediate_size=2 * width, num_hidden_layers=1, vocab_size=97,
                      rope_parameters={"rope_type": "default", "rope_theta": theta},
                      attn_implementation="eager")
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # larger weights than the 0.02 init, so attention is not uniform
        for p in model.model.layers[0].self_attn.parameters():
            p.normal_(0, 0.3)
    return model


def _captured(model, ids):
    """(input, output) of layer 0's attention inside the real forward."""
    seen = {}

    def hook(module, args, kwargs, out):
        seen["x"] = kwargs.get("hidden_states", args[0] if args else None)
        seen["y"] = out[0]

    h = model.model.layers[0].self_attn.register_forward_hook(hook, with_kwargs=True)
    with torch.no_grad():
        model(ids)
    h.remove()
    return seen["x"], seen["y"]


@pytest.mark.parametrize("heads,kv_heads,theta", [(4, 4, 10000.0), (4, 2, 10000.0),
                                                  (8, 1, 500.0)])
def test_attention_equals_llama_attention(heads, kv_heads, theta):
    model = _llama(heads, kv_heads, theta=theta)
    ids = torch.randint(0, 97, (2, 24), generator=torch.Generator().manual_seed(1))
    x, want = _captured(model, ids)
    ours = A.from_llama_config(model.config)
    ours.load_state_dict(model.model.layers[0].self_attn.state_dict())
    with torch.no_grad():
        got = ours(x)
    # longest path: q/k/v projection (64 terms), RoPE (angles up to 24 rad: rounding of the
    # angle counts ~24), scores over d, softmax and weighted sum over T, output projection
    d, t, width = 64 // heads, 24, 64
    tol = fp32_tol(sum_terms(width + t + d + 2 * t + width), scale=want.abs().max().item())
    assert (got - want).abs().max().item() <= tol


def test_causal_mask_keeps_the_past_out_of_reach_of_the_future():
    ours = A.Attention(32, 4)
    x = torch.randn(1, 6, 32)
    y = ours(x)
    x2 = x.clone()
    x2[0, 4:] = torch.randn(2, 32)  # change the last two tokens only
    y2 = ours(x2)
    assert torch.equal(y[0, :4], y2[0, :4]) and not torch.equal(y[0, 4:], y2[0, 4:])


def test_rope_scores_depend_only_on_relative_position():
    d = 8
    q, k = torch.randn(1, 1, 1, d, dtype=torch.float64), torch.randn(1, 1, 1, d,
                                                                      dtype=torch.float64)

    def score(p, s):
        cq, sq = A.rope_angles(torch.tensor([p]), d, dtype=torch.float64)
        ck, sk = A.rope_angles(torch.tensor([s]), d, dtype=torch.float64)
        return (A.apply_rope(q, cq, sq) * A.apply_rope(k, ck, sk)).sum().item()

    assert score(5, 2) == pytest.approx(score(13, 10), abs=1e-12)
    assert score(0, 0) == pytest.approx((q * k).sum().item(), abs=1e-12)
    assert abs(score(5, 2) - score(5, 3)) > 1e-3


def test_rope_angles_by_hand():
    cos, sin = A.rope_angles(torch.tensor([0, 1, 2]), 4, theta=100.0, dtype=torch.float64)
    # d = 4: frequencies 100^0 = 1 and 100^(-2/4) = 0.1, each repeated for the second half
    angles = torch.tensor([[0.0, 0, 0, 0], [1, 0.1, 1, 0.1], [2, 0.2, 2, 0.2]],
                          dtype=torch.float64)
    assert torch.allclose(cos, angles.cos(), atol=1e-12)
    assert torch.allclose(sin, angles.sin(), atol=1e-12)
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    assert A.rotate_half(x).tolist() == [-3.0, -4.0, 1.0, 2.0]


def test_attend_by_hand_on_two_tokens():
    # one head, d = 1: q = k = [1, 2], v = [10, 20]; token 0 sees only itself; token 1 sees
    # scores [2, 4] -> weights softmax([2, 4]) = [1/(1+e^2), e^2/(1+e^2)]
    q = torch.tensor([1.0, 2.0], dtype=torch.float64).view(1, 1, 2, 1)
    v = torch.tensor([10.0, 20.0], dtype=torch.float64).view(1, 1, 2, 1)
    out = A.attend(q, q, v, A.causal_mask(2)).flatten().tolist()
    w = torch.tensor(2.0, dtype=torch.float64).exp().item()
    assert out == pytest.approx([10.0, (10 + 20 * w) / (1 + w)], abs=1e-12)


def test_kv_heads_must_divide_heads():
    with pytest.raises(ValueError, match="must divide"):
        A.Attention(48, 6, 4)
