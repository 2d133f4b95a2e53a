"""The GGUF file engine=llama.cpp runs: a model reference is exported once and reused while
its files stay the same (no llama-cpp-python needed for this)."""

import os
import time

from lmlab.infer import llamacpp


def test_export_is_cached_per_model_and_type(tmp_path, monkeypatch):
    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path / "cache"))
    a = llamacpp.gguf_file("tiny:llama", "q8_0")
    assert a.is_file() and a.name == "model.q8_0.gguf" and tmp_path in a.parents
    stamp = a.stat().st_mtime_ns
    assert llamacpp.gguf_file("tiny:llama", "q8_0") == a and a.stat().st_mtime_ns == stamp
    b = llamacpp.gguf_file("tiny:llama", "q4_1")
    assert b.parent == a.parent and b != a
    assert llamacpp.gguf_file(str(a)) == a  # a .gguf file is used as it is


def test_a_changed_folder_gets_a_new_export(tmp_path, monkeypatch, tiny_model, tokenizer):
    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    tiny_model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    first = llamacpp.gguf_file(str(folder), "f16")
    assert llamacpp.gguf_file(str(folder), "f16") == first
    weights = folder / "model.safetensors"
    later = time.time() + 5
    os.utime(weights, (later, later))  # retrained in place (same size, new time)
    second = llamacpp.gguf_file(str(folder), "f16")
    assert second != first and second.is_file()


def test_pre_tokenizer_label_names_llama_cpps_pattern(tokenizer):
    import json

    from lmlab.quant.export import pre_tokenizer_label

    byte = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    assert pre_tokenizer_label({"pre_tokenizer": byte}) == "gpt-2"
    digits = {"type": "Digits", "individual_digits": True}
    assert pre_tokenizer_label({"pre_tokenizer": {"type": "Sequence",
                                                  "pretokenizers": [digits, byte]}}) == "smollm"
    for other in ({**byte, "add_prefix_space": True}, {**byte, "use_regex": False},
                  {"type": "Sequence", "pretokenizers": [{**digits, "individual_digits": False},
                                                         byte]},
                  {"type": "Split", "pattern": {"Regex": "\\s+"}}, None):
        assert pre_tokenizer_label({"pre_tokenizer": other}) == "default", other
    assert pre_tokenizer_label({"pre_tokenizer": byte, "normalizer": {"type": "NFC"}}) == \
        "default"
    spec = json.loads(tokenizer.backend_tokenizer.to_str())  # SmolLM2's: plain byte-level
    assert pre_tokenizer_label(spec) == "gpt-2"
