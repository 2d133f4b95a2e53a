"""Bad input for scale-out: FSDP on something it cannot shard, more ranks than blocks, a sharded
checkpoint resumed by a run it does not fit, and impossible plans."""

from pathlib import Path

import pytest
import torch

DATA = str(Path(__file__).resolve().parents[1] / "assets" / "sft" / "chat.jsonl")
SFT = ["sft", "model=tiny:llama", f"data={DATA}", "max_steps=1", "batch_size=2",
       "warmup_steps=0", "progress=false", "eval_n=0", "save_every=1"]


def test_fsdp_refuses_a_model_with_no_transformer_blocks():
    from lmlab.train.fsdp import ShardError, check_shardable

    with pytest.raises(ShardError, match="Sequential: it names no transformer blocks"):
        check_shardable(torch.nn.Sequential(torch.nn.Linear(4, 4)), world=1)


def test_fsdp_refuses_more_ranks_than_blocks():
    from lmlab.models import load_model
    from lmlab.train.fsdp import ShardError, check_shardable

    with pytest.raises(ShardError, match="3 ranks but LlamaForCausalLM has only 2 transformer"):
        check_shardable(load_model("tiny:llama"), world=3)


def test_fsdp_refuses_a_quantized_qlora_base():
    from lmlab.models import load_model
    from lmlab.train.fsdp import ShardError, check_shardable

    model = load_model("tiny:llama")
    model.is_loaded_in_4bit = True  # what transformers sets on a bitsandbytes NF4 load
    with pytest.raises(ShardError, match="method=qlora"):
        check_shardable(model, world=1)


def test_sharded_checkpoint_resumed_by_another_method_is_refused(fail, tmp_path):
    from lmlab.cli import main

    out = tmp_path / "run"
    assert main([*SFT, "method=full", "strategy=fsdp", f"output_dir={out}"]) == 0
    assert fail(*SFT, "method=lora", "strategy=fsdp", "max_steps=2", "resume=auto",
                f"output_dir={out}").says("step-1", "another model or method")


def test_full_weights_checkpoint_resumed_with_fsdp_is_refused(fail, tmp_path):
    from lmlab.cli import main

    out = tmp_path / "run"
    assert main([*SFT, "method=full", f"output_dir={out}"]) == 0
    assert fail(*SFT, "method=full", "strategy=fsdp", "max_steps=2", "resume=auto",
                f"output_dir={out}").says("step-1", "without strategy=fsdp", "strategy=ddp")


def test_plan_refuses_an_unknown_device(fail):
    assert fail("plan", "model=7b", "device_memory=a999").says("device_memory", "a999", "h100")


def test_plan_refuses_a_throughput_folder_without_a_rate(fail, tmp_path):
    assert fail("plan", "model=7b", f"throughput_from={tmp_path}").says(
        "throughput_from", "summary.json", "tokens_per_s")
