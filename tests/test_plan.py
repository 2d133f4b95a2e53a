"""The planner's arithmetic, by hand, for a 2-layer model small enough to count on paper:
width d=8, MLP f=16, 2 heads (width 4) with 1 key/value head, vocabulary 10, tied head."""

import pytest

from lmlab.plan import (
    SHAPES,
    Setup,
    Shape,
    flops_per_token,
    memory,
    scenarios,
    shape_for,
    tokens_per_second,
    trainable,
    wall_seconds,
    weights_bytes,
)

TWO = Shape(layers=2, hidden=8, intermediate=16, heads=2, kv_heads=1, vocab=10, tied=True)
S = Setup(seq_len=4, batch=2, devices=2, weight_bytes=4, compute_bytes=4)


def test_parameter_counts():
    # q 8x8, k 8x4, v 8x4, o 8x8, gate/up 8x16, down 16x8 = 64+32+32+64+128+128+128 = 576
    assert TWO.block_linear == 576
    assert TWO.block == 576 + 2 * 8  # two RMSNorm weights
    assert TWO.root == 10 * 8 + 8  # tied embedding + final norm
    assert TWO.params == 2 * 592 + 88 == 1272
    assert Shape(2, 8, 16, 2, 1, 10, tied=False).params == 1272 + 80
    # LoRA r=2 on all 7: r (in + out) = 2*16 + 2*12 + 2*12 + 2*16 + 3 * 2*24 = 256 a block
    assert trainable(TWO, Setup(method="lora", lora_r=2)) == (512, 256)
    # QLoRA: block linears at 0.5625 bytes, the other 1272 - 1152 = 120 at the compute dtype
    assert weights_bytes(TWO, Setup(method="qlora", compute_bytes=4)) == 1152 * 0.5625 + 480


def test_ddp_memory_by_hand():
    m = memory(TWO, S, "ddp")
    assert m["weights"] == 1272 * 4
    assert m["gradients"] == 1272 * 4 * 2  # gradients + DDP's buckets (2 ranks)
    assert m["optimizer"] == 1272 * 8
    # 8 tokens x (2 blocks x (11*8 + 4*16) + 4*8) x 4 B + 8 tokens x 3 x 10 logits x 4 B
    assert m["activations"] == 8 * (2 * 152 + 32) * 4 + 8 * 3 * 10 * 4 == 11712
    # the peak: weights + optimizer + max(activations + DDP's buckets, gradients)
    assert m["total"] == 5088 + 10176 + max(11712 + 5088, 10176) == 32064
    assert memory(TWO, Setup(seq_len=4, batch=2, devices=1), "ddp")["gradients"] == 1272 * 4
    # bf16 autocast over fp32 weights: + the 2-byte copies it caches
    bf16 = Setup(seq_len=4, batch=2, devices=1, compute_bytes=2)
    assert memory(TWO, bf16, "ddp")["weights"] == 1272 * 4 + 1272 * 2
    # lmlab does not shard a QLoRA base: only ddp rows
    assert {r["strategy"] for r in scenarios(TWO, Setup(method="qlora"))} == {"ddp"}


def test_fsdp_memory_by_hand():
    m = memory(TWO, S, "fsdp")
    gathered = 4 * (2 * 592 + 88)  # the running and the prefetched block, and the root
    assert m["weights"] == 1272 * 4 / 2 + gathered == 7632
    assert m["gradients"] == 1272 * 4 / 2 + 4 * (592 + 88) == 5264
    assert m["optimizer"] == 1272 * 8 / 2
    assert m["total"] == 7632 + 5088 + max(11712, 5264) == 24432
    off = memory(TWO, S, "fsdp", offload=True)
    assert (off["weights"], off["gradients"], off["optimizer"]) == (gathered, 2720, 0)
    assert off["total"] == gathered + 0 + max(11712, 2720)


def test_checkpointing_keeps_block_inputs_and_one_block():
    a = memory(TWO, S, "ddp", checkpointing=True)["activations"]
    assert a == 8 * (2 * 8 + 152 + 32) * 4 + 960 == 7360


def test_throughput_and_wall_time_by_hand():
    # 6 N + 12 L d s = 7632 + 768; checkpointing adds a forward: 2 N + 4 L d s
    assert flops_per_token(TWO, 4) == 8400
    assert flops_per_token(TWO, 4, checkpointing=True) == 8400 + 2544 + 256
    assert flops_per_token(TWO, 4, method="lora") == 4 * 1272 + 768
    # 2 devices x 1e6 FLOP/s x 0.42 / 8400 FLOPs a token = 100 tokens/s
    assert tokens_per_second(TWO, S, tflops=1e-6, mfu=0.42) == pytest.approx(100)
    assert wall_seconds(1000, 100) == 10


def test_presets_count_the_real_models():
    from lmlab.models import load_model

    model = load_model("tiny:llama")
    assert SHAPES["tiny"].params == sum(p.numel() for p in model.parameters())
    assert shape_for("tiny:llama") == SHAPES["tiny"]
    assert 134e6 < SHAPES["135m"].params < 135e6  # SmolLM2-135M: 134.5M
    assert 6.7e9 < SHAPES["7b"].params < 6.8e9  # Llama-2-7B: 6.74B
    assert 70.5e9 < SHAPES["70b"].params < 70.6e9  # Llama-3-70B: 70.55B


def test_plan_stage_prints_the_table(capsys):
    from lmlab.cli import main

    assert main(["plan", "model=7b", "devices=8", "device_memory=a100-80", "tokens=1e9"]) == 0
    out = capsys.readouterr().out
    assert "| fsdp | yes |" in out and "| ddp | no |" in out and "tokens in" in out
