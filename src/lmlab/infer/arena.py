"""One buffer for the weights a decode step reads, in the order it reads them, on huge pages.

Why: a batch-1 decode step reads every projection once per token, so how fast the memory under
them streams is the step's speed. A model loaded from safetensors keeps its weights in a
file-backed mapping of 4 KB pages, scattered in file order. The same 538 MB (SmolLM2-135M)
read in the C step's order and with its barriers (2 threads, 2026-12-05, alternating, six
rounds, against a torch ``sum`` of 512 MiB): from that mapping 0.93 of the sum, from one
anonymous buffer 0.99, from one buffer on 2 MB pages 1.02; in the minutes when the machine
reads at ~55 GB/s the gap is larger (45 vs 54 GB/s). ``rehome`` moves a model's parameters
there (benchmarks/RESULTS.md, Inference, "Session 10").

Each parameter stays the same ``Parameter`` object with the same values; only its storage
moves, each tensor into its own storage (a view of the shared buffer would look like shared
memory to safetensors when the model is saved). The old storage is freed when nothing else
holds it, so the model takes no more memory than before. Huge pages where the kernel offers
them (Linux ``madvise(MADV_HUGEPAGE)``); elsewhere one plain buffer. ``LMLAB_ARENA=0`` turns it
off."""

from __future__ import annotations

import math
import mmap
import os

import torch

HUGE = 2 * 2**20  # the 2 MB page this aligns the buffer to
ALIGN = 64  # each tensor starts on a cache line


def enabled() -> bool:
    return os.environ.get("LMLAB_ARENA", "1") != "0"


def _movable(t) -> bool:
    return (isinstance(t, torch.nn.Parameter) and t.device.type == "cpu" and t.is_contiguous()
            and t.dtype.is_floating_point and t.numel() > 0)


def rehome(model, params: list) -> bool:
    """Move ``params`` (parameters of ``model``, in the order a step reads them; repeats are
    moved once) into one buffer in that order. Done once per model: a later call with the same
    parameters where they already are does nothing. Returns True when they are in a buffer
    (now or from before), False when off or when one of them cannot move (not a contiguous
    CPU float ``Parameter``)."""
    seen, todo = set(), []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            todo.append(p)
    if not enabled() or not all(_movable(p) for p in todo):
        return False
    done = getattr(model, "_lmlab_arena", None)
    if done == [p.data_ptr() for p in todo]:
        return True
    news = empty([(p.shape, p.dtype) for p in todo])
    # (normal tensors even when called under inference_mode: the model may train afterwards)
    with torch.inference_mode(False), torch.no_grad():
        for p, new in zip(todo, news):
            new.copy_(p.detach())
            p.data = new
    object.__setattr__(model, "_lmlab_arena", [p.data_ptr() for p in todo])
    return True


def empty(specs: list) -> list:
    """Uninitialised CPU tensors of the given (shape, dtype), one after another in one new
    buffer: each on a cache line, the first on a 2 MB boundary, on huge pages where the kernel
    offers them, each with its own storage (``frombuffer`` keeps the buffer alive)."""
    offs, size = [], 0
    for shape, dtype in specs:
        offs.append(size)
        n = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
        size += -(-n // ALIGN) * ALIGN
    if not hasattr(mmap, "MAP_PRIVATE"):  # (Windows: one plain buffer)
        buf = bytearray(size + HUGE)
    else:  # private: a shared anonymous mapping is shmem, which gets no transparent huge pages
        buf = mmap.mmap(-1, size + HUGE, flags=mmap.MAP_PRIVATE)
    if hasattr(mmap, "MADV_HUGEPAGE") and isinstance(buf, mmap.mmap):
        try:
            buf.madvise(mmap.MADV_HUGEPAGE)  # before the first touch: faults take 2 MB pages
        except OSError:
            pass
    start = -torch.frombuffer(buf, dtype=torch.uint8, count=1).data_ptr() % HUGE
    with torch.inference_mode(False):
        return [torch.frombuffer(buf, dtype=dtype, count=math.prod(shape), offset=start + o)
                .view(shape) for (shape, dtype), o in zip(specs, offs)]


def step_params(model) -> list:
    """The parameters a Llama-family decode step reads, in its order: per layer the input norm,
    q, k, v, o, the post-attention norm, gate, up, down; then the final norm and the LM head
    (the input embedding stays where it is: one row of it is read per token)."""
    m, out = model.model, []
    for layer in m.layers:
        a, mlp = layer.self_attn, layer.mlp
        out += [layer.input_layernorm.weight, a.q_proj.weight, a.k_proj.weight, a.v_proj.weight,
                a.o_proj.weight, layer.post_attention_layernorm.weight, mlp.gate_proj.weight,
                mlp.up_proj.weight, mlp.down_proj.weight]
    return out + [m.norm.weight, model.lm_head.weight]
