"""Bad input to the dtype keys and `lmlab env`."""

import torch


def test_a_training_dtype_outside_the_four_is_refused(fail, tmp_path):
    assert fail("sft", "model=tiny:llama", "dtype=int4", f"output_dir={tmp_path / 'r'}").says(
        "dtype: 'int4' is not one of auto, fp32, bf16, fp16")
    assert not (tmp_path / "r").exists()


def test_an_inference_dtype_outside_the_four_is_refused(fail, tmp_path):
    assert fail("generate", "model=tiny:llama", "prompt=hi", "dtype=float8", "max_new_tokens=2",
                f"output_dir={tmp_path / 'g'}").says(
        "dtype: 'float8' is not one of auto, fp32, bf16, fp16")


def test_env_on_a_missing_gpu_and_bad_threads(fail):
    assert fail("env", "threads=-1").says("threads: -1 is out of range (must be >= 0)")
    if not torch.cuda.is_available():
        assert fail("env", "device=cuda").says("device: cuda is not available here")
