import json

import pytest
import torch

from lmlab.errors import ModelRefError
from lmlab.models import load_model, resolve, write_meta


def test_tiny_is_seeded_and_small():
    a, b = load_model("tiny:llama"), load_model("tiny:llama")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert a.config.num_hidden_layers == 2 and a.config.hidden_size == 64


def test_unknown_references_are_clear(tmp_path):
    with pytest.raises(ModelRefError, match="smollm2-135m-instruct"):
        resolve("smollm3")
    with pytest.raises(ModelRefError, match="unknown tiny preset"):
        load_model("tiny:nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelRefError, match="neither a model folder"):
        resolve(str(tmp_path / "empty"))


def test_run_folder_and_reward_head_references(tmp_path):
    model = load_model("tiny:llama")
    final = tmp_path / "run" / "final"
    model.save_pretrained(final)
    assert resolve(str(tmp_path / "run")).kind == "folder"
    again = load_model(str(tmp_path / "run"))
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), again.parameters()))
    write_meta(final, stage="reward", head="reward")
    with pytest.raises(ModelRefError, match="reward model, not a causal LM"):
        load_model(str(tmp_path / "run"))


def test_adapter_folder_loads_base_plus_lora(tmp_path):
    from lmlab.models.adapters import add_lora

    peft_model = add_lora(load_model("tiny:llama"), r=4, alpha=8, dropout=0.0, targets=[])
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.fill_(0.01)
    peft_model.save_pretrained(tmp_path / "final")
    write_meta(tmp_path / "final", stage="sft", base="tiny:llama")
    r = resolve(str(tmp_path))
    assert r.kind == "adapter" and r.base == "tiny:llama"
    merged = load_model(str(tmp_path), merge_adapter=True)
    x = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        want = peft_model(input_ids=x).logits
        got = merged(input_ids=x).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert json.loads((tmp_path / "final" / "lmlab.json").read_text())["base"] == "tiny:llama"


def test_with_cache_uses_the_forwards_keyword():
    from lmlab.models.compat import with_cache

    class New(torch.nn.Module):
        def forward(self, input_ids=None, cache=None, use_cache=None):
            return cache

    class Old(torch.nn.Module):
        def forward(self, input_ids=None, past_key_values=None, use_cache=None):
            return past_key_values

    class Wrapped(torch.nn.Module):  # peft's wrappers forward **kwargs to the model inside
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def get_base_model(self):
            return self.inner

        def forward(self, **kwargs):
            return self.inner(**kwargs)

    for model, key in ((New(), "cache"), (Old(), "past_key_values"),
                       (Wrapped(Old()), "past_key_values"), (Wrapped(New()), "cache")):
        assert list(with_cache(model, "kv")) == [key]
        assert model(input_ids=1, **with_cache(model, "kv")) == "kv"
    tiny = load_model("tiny:llama")
    import inspect

    want = "cache" if "cache" in inspect.signature(type(tiny).forward).parameters \
        else "past_key_values"
    assert list(with_cache(tiny, None)) == [want]
