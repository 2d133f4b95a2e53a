"""Model FLOPs per token and MFU (lmlab.train.mfu), counted by hand for 2-layer models."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lmlab.train.logging import step_line
from lmlab.train.mfu import (
    FlopCounter,
    matmul_params,
    mfu,
    seq_len_of,
    shape_of,
    train_flops_per_token,
)


def test_flops_per_token_by_hand():
    # 2 layers, width 64, 1000 weights all trained, sequences of 32:
    # 6 x 1000 + 12 x 2 x 64 x 32 = 6000 + 49152
    assert train_flops_per_token(1000, 1000, 2, 64, 32) == 55152.0
    # frozen base, 10 trainable: 4 x 1000 + 2 x 10 + 49152
    assert train_flops_per_token(1000, 10, 2, 64, 32) == 53172.0
    assert train_flops_per_token(1000, 1000, 0, 0, 32) == 6000.0  # no attention known


def test_the_tiny_llama_counts_its_tied_embedding_once(tiny_model):
    # per block: q 64x64 + k 64x32 + v 64x32 + o 64x64 + gate, up, down 64x128 each = 36864,
    # + two norms of 64 = 36992; 2 blocks = 73984; embedding 49152 x 64 = 3145728 (the head
    # too, tied: counted once); final norm 64
    n = 2 * 36992 + 3145728 + 64
    assert matmul_params(tiny_model) == (n, n)
    assert shape_of(tiny_model) == (2, 64)
    assert FlopCounter(tiny_model).per_token(32) == 6 * n + 12 * 2 * 64 * 32


def test_an_untied_input_embedding_is_a_lookup_and_frozen_weights_skip_their_gradients():
    cfg = LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    # blocks: 4 x 16x16 + 3 x 16x32 + 2 x 16 = 2592 each, 2 of them; final norm 16; head 1600
    assert matmul_params(model) == (2 * 2592 + 16 + 1600,) * 2
    for name, p in model.named_parameters():
        p.requires_grad = "lm_head" in name
    assert matmul_params(model) == (6800, 1600)
    assert FlopCounter(model).per_token(10) == 4 * 6800 + 2 * 1600 + 12 * 2 * 16 * 10


def test_a_lora_model_counts_the_adapters_as_the_trained_part(tiny_model):
    from lmlab.models.adapters import add_lora

    n, _ = matmul_params(tiny_model)
    lora = add_lora(tiny_model, r=4, alpha=8, dropout=0.0, targets=["q_proj"])
    total, trained = matmul_params(lora)
    # q_proj is 64 -> 64: A (4 x 64) + B (64 x 4) per layer, 2 layers
    assert trained == 2 * (4 * 64 + 64 * 4) and total == n + trained
    assert shape_of(lora) == (2, 64)


def test_mfu_and_the_log_line():
    # 1e9 FLOPs a token x 50 tokens/s over 2 devices of 100 GFLOP/s = 25%
    assert mfu(1e9, 50.0, 100.0, devices=2) == pytest.approx(0.25)
    assert mfu(1e9, 50.0, None) is None and mfu(1e9, 50.0, 0.0) is None
    row = {"train/loss": 1.0, "train/lr": 1e-3, "train/tokens_per_s": 100.0, "train/mfu": 0.123}
    assert "| tok/s 100 | mfu 12.3% |" in step_line(1, 3, row, 1.0)
    assert "mfu" not in step_line(1, 3, {k: v for k, v in row.items() if k != "train/mfu"}, 1.0)
    assert seq_len_of({"input_ids": torch.zeros(3, 17)}) == 17 and seq_len_of({}) == 0


def test_the_log_line_shows_images_not_zero_tokens():
    row = {"train/loss": 1.0, "train/lr": 1e-3, "train/tokens_per_s": 0.0,
           "train/img_per_s": 2048.4}
    line = step_line(1, 3, row, 1.0)
    assert "| img/s 2048 |" in line and "tok/s" not in line
    # a language model's line keeps tok/s even with another rate beside it
    assert "| tok/s 10 | img/s 2048 |" in step_line(1, 3, {**row, "train/tokens_per_s": 10.0}, 1.0)
