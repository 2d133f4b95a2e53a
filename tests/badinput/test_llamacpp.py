"""engine=llama.cpp: what a user can get wrong, and the missing optional extra."""

import sys

import pytest


@pytest.fixture()
def no_llama_cpp(monkeypatch):
    """As on a machine without the llamacpp extra (import llama_cpp raises ImportError)."""
    monkeypatch.setitem(sys.modules, "llama_cpp", None)


def test_generate_without_the_extra_names_it(fail, tmp_path, no_llama_cpp):
    f = fail("generate", "engine=llama.cpp", "model=tiny:llama", "prompt=hi",
             "max_new_tokens=2", f"output_dir={tmp_path}/g")
    assert f.says("llama-cpp-python", "lmlab[llamacpp]", "engine=lmlab")


def test_serve_without_the_extra_names_it(fail, no_llama_cpp):
    assert fail("serve", "engine=llama.cpp", "model=tiny:llama").says("lmlab[llamacpp]")


def test_missing_gguf_file(fail, tmp_path):
    assert fail("generate", "engine=llama.cpp", f"model={tmp_path}/nothere.gguf", "prompt=hi",
                f"output_dir={tmp_path}/g").says("nothere.gguf", "no such GGUF file")


def test_damaged_gguf_file(fail, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 20)
    assert fail("generate", "engine=llama.cpp", f"model={bad}", "prompt=hi",
                f"output_dir={tmp_path}/g").says("bad.gguf")


@pytest.mark.parametrize("keys,names", [
    (["strategy=beam"], ["strategy", "engine=llama.cpp", "beam"]),
    (["stream=true"], ["stream", "engine=llama.cpp"]),
    (["gguf=q2_k"], ["gguf", "q2_k"]),
])
def test_generate_keys_llama_cpp_does_not_take(fail, tmp_path, keys, names):
    assert fail("generate", "engine=llama.cpp", "prompt=hi", *keys,
                f"output_dir={tmp_path}/g").says(*names)


def test_serve_refuses_an_unknown_engine(fail):
    assert fail("serve", "engine=llamacpp").says("engine", "llama.cpp")
