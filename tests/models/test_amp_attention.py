"""fp32 attention inside CPU bf16 autocast: SDPA sees fp32 q/k/v only inside the block, the
stock class and its saved config are unchanged after it, and the outputs stay the model's."""

import json

import pytest
import torch

from lmlab.data.char_tokenizer import build_char_tokenizer
from lmlab.models import scratch_presets as P
from lmlab.models.amp_attention import NAME, fp32_attention


def _model(position: str):
    tok = build_char_tokenizer(["abcdefgh ijk\n"], ())
    return P.build_decoder(P.size("tiny"), position, tok, seed=0)


def _sdpa_dtypes(monkeypatch) -> list:
    """The dtype each SDPA call computes in: autocast casts its inputs to bf16 (it is on the
    CPU lower-precision list), whatever they were; otherwise the query's."""
    seen, real = [], torch.nn.functional.scaled_dot_product_attention

    def spy(q, *a, **kw):
        amp = torch.is_autocast_enabled("cpu")
        seen.append(torch.get_autocast_dtype("cpu") if amp else q.dtype)
        return real(q, *a, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    return seen


@pytest.mark.parametrize("position", ["rope", "learned", "alibi"])
def test_attention_runs_in_fp32_under_bf16_autocast_only_inside(monkeypatch, position):
    model = _model(position)
    ids = torch.randint(0, 10, (2, 16), generator=torch.Generator().manual_seed(0))
    seen = _sdpa_dtypes(monkeypatch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        base = model(input_ids=ids).logits
        assert set(seen) == {torch.bfloat16}  # what autocast does alone
        seen.clear()
        with fp32_attention(model):
            assert model.config._attn_implementation == NAME
            ours = model(input_ids=ids).logits
        assert set(seen) == {torch.float32} and len(seen) == model.config.num_hidden_layers
    assert model.config._attn_implementation == "sdpa"
    # bf16 rounding of the attention output is the only difference: bf16 logits' tolerance
    assert torch.allclose(ours.float(), base.float(), atol=0.05, rtol=0.05)


def test_restored_after_an_error_and_not_saved(tmp_path):
    model = _model("rope")
    with pytest.raises(RuntimeError), fp32_attention(model):
        raise RuntimeError("stop")
    assert model.config._attn_implementation == "sdpa"
    with fp32_attention(model):
        pass
    model.save_pretrained(tmp_path)
    assert NAME not in (tmp_path / "config.json").read_text()
    json.loads((tmp_path / "config.json").read_text())


def test_disabled_or_non_sdpa_models_are_left_alone():
    model = _model("rope")
    with fp32_attention(model, enabled=False):
        assert model.config._attn_implementation == "sdpa"
    model.config._attn_implementation = "eager"
    with fp32_attention(model):
        assert model.config._attn_implementation == "eager"
    with fp32_attention(torch.nn.Linear(2, 2)) as m:
        assert isinstance(m, torch.nn.Linear)
