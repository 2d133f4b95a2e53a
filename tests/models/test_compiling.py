"""compile=true for training (lmlab.models.compiling): which modules get compiled, that
evals switch them all off and back, and (slow) that a compiled step equals the eager one."""

import pytest
import torch

from lmlab.data.char_tokenizer import build_char_tokenizer
from lmlab.models import scratch_presets as P
from lmlab.models.compiling import (
    compile_model,
    compiled_modules,
    eager,
    repeated_blocks,
)
from tests.tolerance import forward_tol

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"


def _model(position="rope", layers=2):
    tok = build_char_tokenizer([TEXT])
    s = P.size("tiny", layers=layers)
    return P.build_decoder(s, position, tok, seed=0), tok


@pytest.mark.parametrize("position,layers", [("rope", 2), ("learned", 3)])
def test_repeated_blocks_are_the_decoder_layers(position, layers):
    model, _ = _model(position, layers)
    blocks = repeated_blocks(model)
    want = model.model.layers if position == "rope" else model.transformer.h
    assert len(blocks) == layers and all(a is b for a, b in zip(blocks, want, strict=True))
    assert repeated_blocks(torch.nn.Linear(2, 2)) == []


def test_blocks_scope_compiles_each_block_and_eager_switches_all_off():
    model, _ = _model()
    keys = list(model.state_dict())
    assert compiled_modules(model) == []
    assert "2 LlamaDecoderLayer blocks" in compile_model(model, "blocks")
    assert compiled_modules(model) == list(model.model.layers)
    assert list(model.state_dict()) == keys  # checkpoints and final/ are unchanged
    with eager(model):
        assert compiled_modules(model) == []
    assert compiled_modules(model) == list(model.model.layers)


def test_model_scope_and_a_model_without_blocks_compile_the_whole_forward():
    model, _ = _model()
    assert compile_model(model, "model") == "the whole model"
    assert compiled_modules(model) == [model]
    with eager(model):
        assert compiled_modules(model) == []
    lone = torch.nn.Sequential(torch.nn.Linear(2, 2))
    assert compile_model(lone, "blocks") == "the whole model"
    with pytest.raises(ValueError, match="scope"):
        compile_model(lone, "layers")


def test_peft_weight_reads_trace_for_a_plain_weight_and_stay_peft_s_otherwise():
    """``traceable_peft``: dynamo traces peft's ``dequantize_module_weight`` on a plain
    ``nn.Linear`` with no graph break (``fullgraph=True`` refuses any); a module it cannot
    shortcut (HQQ's, marked by ``W_q``) still gets peft's answer, from peft's function run
    eagerly."""
    from peft.utils.integrations import dequantize_module_weight

    from lmlab.models.compiling import traceable_peft

    traceable_peft()
    traceable_peft()  # registered once per process, whoever asks

    class HQQLike(torch.nn.Linear):
        W_q = None

        def dequantize(self):
            return self.weight * 2

    x = torch.randn(3, 4)
    for module, fullgraph in ((torch.nn.Linear(4, 5), True), (HQQLike(4, 5), False)):
        fn = torch.compile(lambda x, m=module: x @ dequantize_module_weight(m).T,
                           backend="eager", fullgraph=fullgraph)
        assert torch.equal(fn(x), x @ dequantize_module_weight(module).T)  # HQQ: 2 W


def _loss_and_grads(model, ids):
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=ids[:, :-1], use_cache=False).logits  # (B, T, V)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
    loss.backward()
    return loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["blocks", "model"])
def test_a_compiled_step_equals_the_eager_one(scope):
    """The same weights and batch: loss and every gradient of the compiled model equal the
    eager model's within the fp32 tolerance of two orders of the same forward (inductor fuses
    and reorders the norms' reductions); backward walks the path again, hence twice it."""
    model, tok = _model()
    ids = torch.randint(0, len(tok), (4, 33), generator=torch.Generator().manual_seed(0))
    want_loss, want_grads = _loss_and_grads(model, ids)
    compile_model(model, scope)
    got_loss, got_grads = _loss_and_grads(model, ids)
    tol = forward_tol(model.config, 32)
    assert abs(float(got_loss - want_loss)) <= tol * max(1.0, float(want_loss))
    assert float((got_grads - want_grads).abs().max()) <= 2 * tol * float(
        want_grads.abs().max())
    with eager(model):
        again, _ = _loss_and_grads(model, ids)
    assert float(again) == float(want_loss)  # eager is the uncompiled forward, bit for bit
