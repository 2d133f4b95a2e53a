"""`lmlab serve` setup: config checks and the vLLM import guard (the server itself is tested in
tests/serve/)."""

import importlib.util

import pytest

from lmlab.config import load_config
from lmlab.errors import ConfigError, UserError
from lmlab.stages.serve import Config, build


def test_config_checks_limits_together():
    with pytest.raises(ConfigError) as e:
        load_config(Config, None, ["port=-1", "engine=tgi"])
    assert len(e.value.problems) == 2
    with pytest.raises(ConfigError, match="default_max_tokens: 2000 is over max_tokens"):
        load_config(Config, None, ["default_max_tokens=2000", "max_tokens=100"])


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_vllm_engine_without_vllm_is_a_clear_error():
    with pytest.raises(UserError, match="pip install vllm"):
        build(Config(model="tiny:llama", engine="vllm"))
