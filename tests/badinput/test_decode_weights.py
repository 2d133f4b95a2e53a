"""Bad-input corpus, ``decode_weights`` (generate, serve, bench): a precision the decode step
has no kernel for, and rounded weights without the packed step that reads them."""

from __future__ import annotations


def test_an_unknown_precision_is_refused_naming_the_choices(fail, tmp_path):
    for stage in ("generate", "serve"):
        assert fail(stage, "model=tiny:llama", "decode_weights=fp16",
                    f"output_dir={tmp_path}/r").says("decode_weights", "fp16", "int8")


def test_rounded_weights_need_pack_weights(fail, tmp_path):
    assert fail("generate", "model=tiny:llama", "decode_weights=bf16", "pack_weights=false",
                f"output_dir={tmp_path}/r").says("decode_weights", "pack_weights=true")


def test_the_library_refuses_an_unknown_precision(tmp_path):
    import pytest

    from lmlab.errors import ConfigError
    from lmlab.infer.packed import packed_linears
    from lmlab.models import load_model

    with pytest.raises(ConfigError, match="decode_weights.*fp32, bf16, int8.*'q4'"):
        packed_linears(load_model("tiny:llama"), "q4")
