"""activation_checkpointing=true recomputes each block in backward: the same gradients."""

import pytest
import torch

from tests.tolerance import forward_terms, fp32_tol, sum_terms
from tests.train.helpers import pad_collate, random_examples


def _grads(checkpointing: bool, lora: bool) -> tuple[dict[str, torch.Tensor], int]:
    """(trainable parameters' gradients, how often block 0's MLP began a forward)."""
    from lmlab.losses.objectives import LMObjective
    from lmlab.models import load_model
    from lmlab.models.adapters import add_lora
    from lmlab.train.fsdp import enable_activation_checkpointing, find_blocks

    model = load_model("tiny:llama")
    if lora:
        torch.manual_seed(0)  # LoRA's A matrices draw from the global RNG
        model = add_lora(model, r=4, alpha=8, dropout=0.0, targets=["q_proj", "v_proj"])
    if checkpointing:
        enable_activation_checkpointing(model)
    model.train()
    calls = []
    # a pre-hook: the recompute stops early (inside the MLP) once it has what backward needs
    find_blocks(model)[0].mlp.register_forward_pre_hook(lambda *a: calls.append(1))
    batch = pad_collate(random_examples(4, lo=6, hi=20))
    loss, _ = LMObjective()(model, batch)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}, len(calls)


@pytest.mark.parametrize("lora", [False, True])
def test_checkpointing_gives_the_same_gradients(lora):
    from lmlab.models import load_model

    (plain, runs_plain), (ckpt, runs_ckpt) = _grads(False, lora), _grads(True, lora)
    assert (runs_plain, runs_ckpt) == (1, 2)  # the block really was recomputed in backward
    assert plain.keys() == ckpt.keys() and plain
    # the recomputed forward is the same fp32 arithmetic; allow one forward's round-off
    # (tests/tolerance.py) relative to the largest gradient, summed over 4 sequences
    terms = 4 * sum_terms(forward_terms(load_model("tiny:llama").config, context=20))
    for n, g in plain.items():
        tol = fp32_tol(terms, max(1.0, float(g.abs().max())))
        assert float((ckpt[n] - g).abs().max()) <= tol, n


def test_checkpointing_is_on_in_every_block():
    from lmlab.models import load_model
    from lmlab.train.fsdp import enable_activation_checkpointing, find_blocks

    model = load_model("tiny:llama")
    enable_activation_checkpointing(model)
    blocks = find_blocks(model)
    assert len(blocks) == 2 and all(b.gradient_checkpointing for b in blocks)
