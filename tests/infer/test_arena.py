"""infer.arena: a model's step weights moved into one buffer in read order (huge pages where the
kernel has them) keep their values, their Parameter objects and their own storages; the move is
done once, can be turned off, survives saving and copying, and never leaves a native step
reading freed memory."""

import copy
import gc
import re
from pathlib import Path

import pytest
import torch

from lmlab.infer import arena, native

from ..tiny import varied


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


@pytest.fixture()
def twin():
    return varied()


def test_rehome_moves_in_order_once_and_keeps_values(twin):
    ids = torch.tensor([[3, 9, 4, 1, 7]])
    before = _logits(twin, ids)
    params = arena.step_params(twin)
    objs = [id(p) for p in params]
    values = [p.detach().clone() for p in params]
    assert arena.rehome(twin, params)
    assert [id(p) for p in arena.step_params(twin)] == objs  # the same Parameter objects
    for p, v in zip(params, values):
        assert torch.equal(p.detach(), v)
    assert torch.equal(_logits(twin, ids), before)
    # read order, each on a cache line, the first on a 2 MB boundary; tied weights once
    uniq = list({id(p): p for p in params}.values())
    ptrs = [p.data_ptr() for p in uniq]
    assert ptrs == sorted(ptrs) and all(q % arena.ALIGN == 0 for q in ptrs)
    assert ptrs[0] % arena.HUGE == 0
    sizes = [p.numel() * p.element_size() for p in uniq]
    assert ptrs[-1] + sizes[-1] - ptrs[0] < sum(sizes) + arena.ALIGN * len(uniq)
    if twin.config.tie_word_embeddings:
        assert twin.lm_head.weight is twin.model.embed_tokens.weight
    # each its own storage (safetensors would take one shared storage for tied weights)
    assert len({p.untyped_storage().data_ptr() for p in uniq}) == len(uniq)
    assert arena.rehome(twin, params)  # a second call: already there, nothing moves
    assert [p.data_ptr() for p in uniq] == ptrs


def test_off_or_unmovable_leaves_the_model_alone(twin, monkeypatch):
    params = arena.step_params(twin)
    ptrs = [p.data_ptr() for p in params]
    monkeypatch.setenv("LMLAB_ARENA", "0")
    assert not arena.rehome(twin, params)
    monkeypatch.setenv("LMLAB_ARENA", "1")
    assert not arena.rehome(twin, params + [torch.zeros(3)])  # not a Parameter
    assert [p.data_ptr() for p in params] == ptrs


def test_a_rehomed_model_saves_reloads_and_copies(twin, tmp_path):
    ids = torch.tensor([[5, 2, 8]])
    assert arena.rehome(twin, arena.step_params(twin))
    want = _logits(twin, ids)
    twin.save_pretrained(tmp_path)
    back = type(twin).from_pretrained(tmp_path)
    assert torch.equal(_logits(back, ids), want)
    dup = copy.deepcopy(twin)
    assert torch.equal(_logits(dup, ids), want)
    # the copy's weights are its own, not in the buffer: a step over it moves them again
    assert dup.model.layers[0].self_attn.q_proj.weight.data_ptr() != \
        twin.model.layers[0].self_attn.q_proj.weight.data_ptr()
    assert arena.rehome(dup, arena.step_params(dup))
    assert torch.equal(_logits(dup, ids), want)


@pytest.mark.skipif(not native.available(), reason=f"no native step: {native.why_not()}")
def test_the_native_step_rehomes_fp32_weights_and_outlives_a_swap(twin):
    from lmlab.infer.fastpath import LlamaStep
    from lmlab.infer.packed import packed_linears

    q = twin.model.layers[0].self_attn.q_proj.weight
    old = q.data_ptr()
    with torch.inference_mode():
        st = LlamaStep(twin, None, 1, 8, lin=packed_linears(twin))
        nat = st._native_step()
        assert nat is not None and q.data_ptr() != old  # moved before the step took pointers
        assert q.data_ptr() in twin._lmlab_arena
        st.step(torch.tensor([[1, 2, 3]]), torch.arange(3)[None], 3, None)
        args = (st.k, st.v, torch.tensor([[4]]), torch.tensor([[3]]), 4, None, True, False)
        want = nat.step(*args).clone()
    # moved under inference_mode, the weights are still ones a training step can use
    loss = twin(torch.tensor([[1, 2, 3]]), labels=torch.tensor([[1, 2, 3]])).loss
    loss.backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()
    # every parameter's storage swapped behind the step's back: it still reads what it held
    with torch.no_grad():
        for p in twin.parameters():
            p.data = p.data.clone()
    gc.collect()
    with torch.inference_mode():
        assert torch.equal(nat.step(*args), want)


def _huge_pages_on() -> bool:
    f = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    return f.exists() and re.search(r"\[(always|madvise)\]", f.read_text()) is not None


@pytest.mark.skipif(not _huge_pages_on(), reason="no transparent huge pages on this machine")
def test_a_large_buffer_is_on_huge_pages():
    model = torch.nn.Linear(1024, 2048, bias=False)  # 8 MB
    assert arena.rehome(model, [model.weight])
    at = model.weight.data_ptr()
    kb = None
    for block in Path("/proc/self/smaps").read_text().split("\n")[:-1]:
        m = re.match(r"([0-9a-f]+)-([0-9a-f]+) ", block)
        if m:
            inside = int(m[1], 16) <= at < int(m[2], 16)
        elif inside and block.startswith("AnonHugePages:"):
            kb = int(block.split()[1])
            break
    assert kb is not None and kb >= 2048, f"AnonHugePages {kb} kB"


@pytest.mark.parametrize("on", [True, False])
def test_bf16_copies_lie_in_read_order_in_one_buffer(twin, monkeypatch, on):
    monkeypatch.setenv("LMLAB_ARENA", "1" if on else "0")
    mats = [t for t in arena.step_params(twin) if t.dim() == 2]
    copies = native.bf16_copies(twin, mats)
    assert all(c.dtype == torch.bfloat16 for c in copies)
    for c, t in zip(copies, mats):
        assert torch.equal(c, t.detach().to(torch.bfloat16))
    uniq = list({id(c): c for c in copies}.values())
    ptrs = [c.data_ptr() for c in uniq]
    if on:  # one after another, the first on a 2 MB boundary
        assert ptrs == sorted(ptrs) and ptrs[0] % arena.HUGE == 0
        end = ptrs[-1] + uniq[-1].numel() * 2
        assert end - ptrs[0] < sum(c.numel() * 2 for c in uniq) + arena.ALIGN * len(uniq)
    assert native.bf16_copies(twin, mats[:2])[1] is copies[1]  # kept: not made again
    assert native.bf16_copy(twin, mats[0]) is copies[0]
