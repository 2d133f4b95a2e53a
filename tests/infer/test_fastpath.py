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
