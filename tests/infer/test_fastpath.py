"""The lean Llama decode step gives the HF forward's logits, bit for bit, and knows its limits."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

from lmlab.infer.decode import decode, left_pad, stream_tokens
from lmlab.infer.fastpath import LlamaStep
from lmlab.infer.sampling import SamplingParams

PROMPTS = ["Hello there, how are", "The quick brown fox jumps over the lazy dog and then",
           "A", "def add(a, b):\n    return"]


@pytest.mark.parametrize("n_prompts", [1, 4])  # 1: no padding (GQA path); 4: masked path
def test_step_logits_equal_hf_forward_exactly(model, tokenizer, n_prompts):
    ids, mask = left_pad([tokenizer(p)["input_ids"] for p in PROMPTS[:n_prompts]],
                         tokenizer.pad_token_id)
    p = SamplingParams(temperature=0, max_new_tokens=12, ignore_eos=True)
    fast = [s.logits.clone() for s in stream_tokens(model, ids, mask, p, fast=True)]
    slow = [s.logits.clone() for s in stream_tokens(model, ids, mask, p, fast=False)]
    assert len(fast) == 12 and all(torch.equal(a, b) for a, b in zip(fast, slow))


def test_rows_leaving_the_batch(model, tokenizer):
    ids, mask = left_pad([tokenizer(p)["input_ids"] for p in PROMPTS], tokenizer.pad_token_id)
    free = decode(model, ids, mask, SamplingParams(temperature=0, max_new_tokens=10,
                                                   ignore_eos=True), fast=False)
    eos = [free.tokens[0][2], free.tokens[2][5]]  # two rows stop early, at different steps
    p = SamplingParams(temperature=0, max_new_tokens=10, logprobs=True)
    a = decode(model, ids, mask, p, eos_token_ids=eos, fast=True)
    b = decode(model, ids, mask, p, eos_token_ids=eos, fast=False)
    assert a.tokens == b.tokens and a.logprobs == b.logprobs
    assert a.finish_reasons.count("eos") >= 2


def test_supports_only_plain_llama(model):
    assert LlamaStep.supports(model)
    small = dict(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                 num_attention_heads=2, num_key_value_heads=1)
    assert not LlamaStep.supports(LlamaForCausalLM(LlamaConfig(attention_bias=True, **small)))
    assert not LlamaStep.supports(MistralForCausalLM(MistralConfig(**small)))
    from lmlab.models.adapters import add_lora

    lora = add_lora(LlamaForCausalLM(LlamaConfig(**small)), r=2, alpha=4, dropout=0.0,
                    targets=["q_proj"])
    assert not LlamaStep.supports(lora)


def test_lora_model_decodes_through_hf_forward(tokenizer):
    """A peft model is not a plain llama: it takes the HF path, with the same result (a fresh
    LoRA adapter is the identity)."""
    from lmlab.models.adapters import add_lora

    from .conftest import varied

    base = varied()
    ids, mask = left_pad([tokenizer(p)["input_ids"] for p in PROMPTS], tokenizer.pad_token_id)
    p = SamplingParams(temperature=0, max_new_tokens=6, ignore_eos=True)
    ref = decode(base, ids, mask, p).tokens
    lora = add_lora(base, r=4, alpha=8, dropout=0.0, targets=[])
    assert decode(lora, ids, mask, p).tokens == ref


def test_lin_few_rows_is_f_linear_up_to_rounding_and_f_linear_itself_elsewhere():
    import torch.nn.functional as F

    from lmlab.infer.fastpath import FEW_ROWS, lin_few_rows

    torch.manual_seed(0)
    mod = torch.nn.Linear(64, 96, bias=False)
    for shape in [(1, 1), (1, 2), (1, 8), (3, 1), (2, 4), (1, FEW_ROWS), (1, FEW_ROWS + 1),
                  (1, 40)]:
        x = torch.randn(*shape, 64)
        got, want = lin_few_rows(x, mod), F.linear(x, mod.weight)
        assert got.shape == want.shape and got.is_contiguous()
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        rows = shape[0] * shape[1]
        if rows == 1 or rows > FEW_ROWS:  # one row, or many: F.linear itself
            assert torch.equal(got, want)
        else:  # a few: W @ x^T
            flat = x.reshape(rows, 64)
            assert torch.equal(got.reshape(rows, 96), torch.mm(mod.weight, flat.t()).t())
    half = torch.nn.Linear(64, 96, bias=False).to(torch.bfloat16)
    x = torch.randn(1, 4, 64, dtype=torch.bfloat16)
    assert torch.equal(lin_few_rows(x, half), F.linear(x, half.weight))
