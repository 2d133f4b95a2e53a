"""The model-folder checks on hand-made files: sizes computed by hand, no model needed."""

import json

import pytest

from lmlab.errors import ModelRefError
from lmlab.models import check


def safetensors(path, declared_end: int, data_bytes: int):
    """A safetensors file whose one tensor ends at ``declared_end`` and that holds
    ``data_bytes`` bytes after its header."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [declared_end // 4],
                               "data_offsets": [0, declared_end]}}).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * data_bytes)
    return path


def test_a_whole_file_passes_and_one_byte_short_fails(tmp_path):
    check.check_safetensors(safetensors(tmp_path / "a.safetensors", 16, 16))
    check.check_safetensors(safetensors(tmp_path / "b.safetensors", 16, 17))  # padding is fine
    f = safetensors(tmp_path / "c.safetensors", 16, 15)
    header = len(f.read_bytes()) - 15 - 8
    with pytest.raises(ModelRefError, match=rf"{8 + header + 15} bytes, but its header "
                                            rf"describes {8 + header + 16}"):
        check.check_safetensors(f)


def test_a_header_length_past_the_end(tmp_path):
    f = tmp_path / "h.safetensors"
    f.write_bytes((1000).to_bytes(8, "little") + b"{}")
    with pytest.raises(ModelRefError, match="10 bytes; its header is incomplete"):
        check.check_safetensors(f)


def test_model_type_typo_is_named_with_a_suggestion(tmp_path):
    with pytest.raises(ModelRefError, match="'lama'.*did you mean 'llama'"):
        check.check_model_type(tmp_path / "config.json", {"model_type": "lama"})
    check.check_model_type(tmp_path / "config.json", {"model_type": "llama"})


def test_weights_present_and_tokenizer_files(tmp_path):
    with pytest.raises(ModelRefError, match="no weights"):
        check.check_weights(tmp_path)
    safetensors(tmp_path / "model.safetensors", 8, 8)
    check.check_weights(tmp_path)
    assert not check.has_tokenizer(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("{}")
    assert check.has_tokenizer(tmp_path)


def test_gguf_magic(tmp_path):
    f = tmp_path / "x.gguf"
    f.write_bytes(b"GGML" + b"\0" * 20)
    assert "magic" in check.gguf_problem(f)
