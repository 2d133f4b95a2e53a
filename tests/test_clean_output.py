"""A stage's first lines hold no warning a user cannot act on: the CLI drops known library noise
(lmlab.cli._NOISE, _NOISE_WARNINGS) and nothing else."""

import logging
import os
import re
import subprocess
import sys
import warnings

import pytest

# what reads as a failure or a to-do in a stage's output
ALARM = re.compile(r"warn|error|fail|skipping|deprecat|traceback", re.IGNORECASE)


def test_bitsandbytes_kernel_noise_is_dropped_and_other_lines_kept(caplog):
    from lmlab.cli import _drop_noise

    _drop_noise()
    trust = logging.getLogger("kernels._internals.hf_hub")
    cpu = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING):
        trust.warning("Skipping publisher trust check for 'kernels-community/quantization-"
                      "bitsandbytes' because Hugging Face Hub is in offline mode.")
        cpu.warning("Failed to load CPU gemm_4bit_forward from kernels-community: Version 1 ...")
        trust.warning("a kernel repository could not be reached")
        cpu.warning("4-bit weights on CPU: something else")
    assert [r.getMessage() for r in caplog.records] == [
        "a kernel repository could not be reached", "4-bit weights on CPU: something else"]


def test_peft_deprecation_warning_is_dropped_and_others_kept():
    from lmlab.cli import _drop_noise

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _drop_noise()
        warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.",
                      FutureWarning)
        warnings.warn("another future change", FutureWarning)
    assert [str(w.message) for w in seen] == ["another future change"]


@pytest.mark.slow
def test_grpo_on_the_default_model_starts_without_noise(tmp_path):
    """The issue's example: `lmlab grpo` on smollm2-135m-instruct (cached locally) printed the
    bitsandbytes kernel lines and peft's FutureWarning before its first line of its own."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    argv = ["grpo", f"output_dir={tmp_path / 'run'}", "max_steps=1", "prompts_per_update=1",
            "group_size=2", "max_new_tokens=2", "task_eval_n=0", "data_limit=2", "batch_size=2",
            "progress=false"]
    p = subprocess.run([sys.executable, "-m", "lmlab", *argv], env=env, capture_output=True,
                       text=True, timeout=600, check=False)
    assert p.returncode == 0, p.stderr
    # progress bars (transformers' "Loading weights") redraw with \r: each redraw is a line
    lines = [x for x in re.split(r"[\r\n]+", p.stderr + p.stdout) if x.strip()]
    alarms = [x for x in lines[:40] if ALARM.search(x)]
    assert not alarms, "\n".join(alarms)
    assert any(x.startswith("[lmlab] grpo on smollm2-135m-instruct") for x in lines)
