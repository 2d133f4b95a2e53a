"""Bad-input corpus, `lmlab scratch`: keys it has no use for, unknown labs, sizes out of range."""

from __future__ import annotations


def test_unknown_lab(fail, tmp_path):
    assert fail("scratch", "lab=resnet", f"output_dir={tmp_path}/r").says("lab", "resnet")


def test_a_model_is_not_used(fail, tmp_path):
    assert fail("scratch", "model=tiny:llama", f"output_dir={tmp_path}/r").says("model")


def test_too_few_moons_and_a_zero_learning_rate(fail, tmp_path):
    assert fail("scratch", "moons=2", "xor_lr=0", f"output_dir={tmp_path}/r").says("moons",
                                                                                    "xor_lr")


def test_rerun_into_a_finished_folder(fail, tmp_path):
    from lmlab.cli import main

    assert main(["scratch", "lab=perceptron", f"output_dir={tmp_path}/r"]) == 0
    assert fail("scratch", "lab=perceptron", f"output_dir={tmp_path}/r").says("overwrite=true")
