"""The native (C) small-batch decode step: build, load, and call ``native.c``.

Why: batch-1 decoding is bound by memory bandwidth, and torch's fp32 matrix-vector kernels read
SmolLM2-135M's 576-column weights at about half the speed the CPU can read memory; the C step,
over weights moved into one huge-page buffer in read order (``arena``), reads them at 0.94-1.00
of the speed of a plain sum (benchmarks/RESULTS.md, Inference, "Session 10").

``native.c`` is compiled once per machine with the system C compiler (``$CC``, else ``cc``,
``gcc`` or ``clang``: ``-O3 -march=native``, with OpenMP when the compiler has it) into
``cache_dir()/native/``, under a name that hashes the source, the flags, the compiler's version
and the CPU, so a changed file or another machine builds its own copy. Without a compiler (or
when ``LMLAB_NATIVE=0``) ``available()`` is False and decoding keeps the torch path; a missing
compiler or a failed build prints a one-line notice saying why.

Used by ``fastpath.LlamaStep`` for steps of at most ``MAX_ROWS`` inputs (batch x block length)
when it runs with packed weights (``pack=True``), and by the server's ``SlotKV`` decode steps,
on a plain fp32 CPU ``LlamaForCausalLM`` (``supports``). Results equal the torch step up to
fp32 rounding (tested), not bit for bit.

``weights`` (``infer.precision``, the ``decode_weights`` key): the step reads bfloat16 copies of
the projections and the head, or int8 copies in blocks of 32 with an fp16 scale each (q8_0),
made once and kept on the model (``narrow_copies``); the torch step then runs the same rounded
values (``infer.packed``). Dispatch: ``-march=native`` compiles the fp32 / bf16 kernels for this
CPU's vector width (AVX2, AVX-512; the cache name includes the CPU's flags); the int8 products
pick their kernel at run time (``int8_kernel``: AVX-512 VNNI, AVX2 byte products, or plain C),
and ``LMLAB_NATIVE_ISA=generic|avx2|avx512`` asks for a lower one (tests of the fallbacks on any
CPU; a kernel the CPU lacks falls back to the best it has). bf16 products of 5+ inputs run on
AMX tiles where the build, the CPU and Linux allow (the inputs as hi + lo bf16 parts: the fp32
inputs' products up to ~2^-16 of their size); ``LMLAB_NATIVE_AMX=0`` keeps them on the FMA
kernels (docs/hardware.md, "A batch-8 decode step")."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path

import torch

from lmlab.common import cache_dir
from lmlab.infer import arena
from lmlab.infer.precision import blocks, quantize_blocks
from lmlab.infer.threads import Pooled, ThreadChoice, adapting, shape_class

SOURCE = Path(__file__).with_name("native.c")
FLAGS = ["-O3", "-march=native", "-shared", "-fPIC", "-std=gnu11"]
# the decode step's phases timed (``phase_times``; benchmarks/profile_decode_phases.py): a build
# of its own with -DLM_PROF, only under LMLAB_NATIVE_PROF=1 (the default build has no timers)
PHASES = ["embed", "norm", "qkv", "rope", "attention", "merge", "o", "gate_up", "silu", "down",
          "final_norm", "head", "argmax", "wait"]
PROF_THREADS = 64  # native.c's
# the largest step (inputs = batch x block length) the C step runs; larger ones (prefills,
# wide batches) are compute-bound and go to oneDNN's matrix kernels
# (2 threads, SmolLM2-135M, ms per step C / torch-packed, best of 5, 2026-12-05, after the
# blocked products' sums went four at a time: every position's logits after 100 tokens, 20
# tokens 45.4 / 48.7, 24 tokens 50.1 / 53.4, 28 tokens 56.5 / 58.5, 32 tokens 68.9 / 64.1; a
# prompt's prefill (last position only) of 20 / 24 / 32 tokens 38.2 / 42.4 / 55.3 against 43.4 /
# 46.6 / 55.0. Before, 2026-12-05, 100 tokens of context: a block of 1 token 10-18 / 28-37, 8
# tokens 18-20 / 34-39, 12 tokens 26-31 / 37-43, 16 tokens 40-46 / 44-46, 24 tokens 60-62 /
# 59-64; 2026-12-04, before the blocked products: 8 tokens 36 / 35, 11 tokens 53 / 37)
MAX_ROWS = 24
# keys per attention task (native.c splits the cache in chunks, one task per row, key/value head
# and chunk, and merges them): SmolLM2-135M, 2 threads, ms per step of 1 / 8 tokens after 1,800
# of context, alternating builds, 2026-12-05: chunks of 32 12.5 / 31.6, 64 12.7 / 29.1, 128
# 12.5 / 29.7, 256 11.9 / 28.6, 512 11.5 / 28.3, one task per (input, head) before 13.1 / 32.4;
# after 170 tokens all within 1 %
ATT_CHUNK = 512

_lib = None
_off = 0  # depth of ``off()`` blocks
_why_not: str | None = None  # why the library is unavailable (None: not tried yet, or loaded)


class _Model(ctypes.Structure):
    _fields_ = [("D", ctypes.c_int), ("H", ctypes.c_int), ("Hkv", ctypes.c_int),
                ("Dh", ctypes.c_int), ("I", ctypes.c_int), ("V", ctypes.c_int),
                ("n_layers", ctypes.c_int), ("eps", ctypes.c_float), ("scale", ctypes.c_float),
                ("rope_scale", ctypes.c_float), ("inv_freq", ctypes.c_void_p),
                ("embed", ctypes.c_void_p), ("norm", ctypes.c_void_p),
                ("head", ctypes.c_void_p), ("Vh", ctypes.c_int), ("head_x", ctypes.c_void_p),
                ("Vx", ctypes.c_int), ("wtype", ctypes.c_int), ("layer", ctypes.c_void_p),
                ("att_chunk", ctypes.c_int), ("isa", ctypes.c_int), ("amx", ctypes.c_int)]


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def _cpu() -> str:
    """What the built code depends on: the CPU model and its feature flags (``-march=native``)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine() + platform.processor()
    keep = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags", "Features"))]
    return "\n".join(sorted(set(keep)))


def _build(cc: str) -> Path:
    """Compile ``native.c`` into the cache (once per source, flags, compiler and CPU)."""
    src = SOURCE.read_bytes()
    version = subprocess.run([cc, "--version"], capture_output=True, text=True,
                             check=False).stdout
    errors = []
    prof = ["-DLM_PROF"] if profiling() else []
    for extra in (["-fopenmp"], []):  # OpenMP when the compiler has it (not Apple's clang)
        flags = FLAGS + prof + extra
        key = hashlib.sha256(b"\0".join([src, " ".join(flags).encode(), version.encode(),
                                          _cpu().encode()])).hexdigest()[:16]
        out = cache_dir() / "native" / f"lmlab_native_{key}.so"
        if out.exists():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            tmp_out = Path(tmp) / out.name
            run = subprocess.run([cc, *flags, "-o", str(tmp_out), str(SOURCE), "-lm"],
                                 capture_output=True, text=True, check=False)
            if run.returncode == 0:
                os.replace(tmp_out, out)  # atomic: a concurrent build never sees half a file
                return out
            errors.append(run.stderr.strip().splitlines()[-1:] or ["?"])
    raise RuntimeError(f"{cc} could not build {SOURCE.name}: {errors[-1][0]}")


def load():
    """The loaded library, or None (``why_not()`` says why); built on the first call."""
    global _lib, _why_not
    if _lib is not None or _why_not is not None:
        return _lib
    if os.environ.get("LMLAB_NATIVE", "1") == "0":
        _why_not = "LMLAB_NATIVE=0"
        return None
    cc = _compiler()
    if cc is None:
        _why_not = "no C compiler (set CC, or install gcc)"
    else:
        try:
            lib = ctypes.CDLL(str(_build(cc)))
            lib.lm_step.restype = ctypes.c_int
            p, i = ctypes.c_void_p, ctypes.c_int
            lib.lm_step.argtypes = [p, p, p, i, i, i, p, ctypes.c_int64, p, p, p, i, p, p, i, i,
                                    i]
            lib.lm_greedy.restype = ctypes.c_int
            lib.lm_greedy.argtypes = [p, ctypes.c_int64, ctypes.c_int64, i, i, p, i, p, p, p, i,
                                      p, p, p, i]
            lib.lm_work_floats.restype = ctypes.c_int64
            lib.lm_work_floats.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
            lib.lm_q8_isa.restype = ctypes.c_int
            lib.lm_q8_isa.argtypes = [i]
            lib.lm_q8_matvec.restype = ctypes.c_int
            lib.lm_q8_matvec.argtypes = [p, i, i, p, i, p, i]
            lib.lm_bf16_matvec.restype = ctypes.c_int
            lib.lm_bf16_matvec.argtypes = [p, i, i, p, i, p, i]
            lib.lm_steal_test.restype = ctypes.c_int64
            lib.lm_steal_test.argtypes = [i]
            lib.lm_read.restype = ctypes.c_double
            lib.lm_read.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
            lib.lm_argmax.restype = ctypes.c_int64
            lib.lm_argmax.argtypes = [p, i]
            if profiling():
                lib.lm_prof.restype = ctypes.c_int
                lib.lm_prof.argtypes = [p, p, p, i]
            _lib = lib
        except (OSError, RuntimeError) as e:
            _why_not = str(e)
    if _why_not is not None:
        print(f"lmlab: the native decode step is off ({_why_not}); decoding uses torch",
              file=sys.stderr)
    return _lib


def profiling() -> bool:
    """LMLAB_NATIVE_PROF=1: the library is the build that times the step's phases."""
    return os.environ.get("LMLAB_NATIVE_PROF", "0") == "1"


def phase_times(reset: bool = True) -> dict | None:
    """Seconds per phase of the C step since the last reset (``PHASES``; "wait": at barriers),
    per thread that ran ("threads": a list of dicts, their sums; "least": the least any one
    step took, per thread and phase: on a shared machine the steps no other process
    preempted), and the counts of barriers, parallel regions (thread 0's) and steps; None
    unless ``profiling()``. Zeroes everything when ``reset``."""
    lib = load()
    if lib is None or not profiling():
        return None
    n = len(PHASES)
    acc = (ctypes.c_double * (PROF_THREADS * n))()
    least = (ctypes.c_double * (PROF_THREADS * n))()
    counts = (ctypes.c_int64 * 3)()
    if lib.lm_prof(acc, least, counts, int(reset)) != n:
        raise RuntimeError("native.c's phases differ from native.PHASES")
    ran = [t for t in range(PROF_THREADS) if any(acc[t * n:(t + 1) * n])]
    return {"threads": [dict(zip(PHASES, acc[t * n:(t + 1) * n])) for t in ran],
            "least": [dict(zip(PHASES, least[t * n:(t + 1) * n])) for t in ran],
            "barriers": counts[0], "regions": counts[1], "steps": counts[2]}


def why_not() -> str | None:
    return _why_not


def available() -> bool:
    """The library loads here and no ``off()`` block is active."""
    return not _off and load() is not None


@contextlib.contextmanager
def off():
    """Within this block new decodes use the torch step (benchmarks compare the two)."""
    global _off
    _off += 1
    try:
        yield
    finally:
        _off -= 1


def read_gbs(nbytes: int, threads: int, repeats: int = 4) -> float | None:
    """GB/s of the fastest of ``repeats`` reads of one ``nbytes`` fp32 buffer by ``lm_read``:
    ``threads`` OpenMP threads, each streaming its share with the vector sums the decode
    step's row products use, from an ``arena`` buffer (huge pages, as the weights sit). The
    probe's read bandwidth (``lmlab.hardware``); None where the library does not load."""
    lib = load()
    if lib is None:
        return None
    n = max(32, nbytes // 4 // 32 * 32)
    (x,) = arena.empty([((n,), torch.float32)])
    x.fill_(1.0)  # every page touched (and faulted in) before timing
    lib.lm_read(x.data_ptr(), n, threads)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        total = lib.lm_read(x.data_ptr(), n, threads)
        best = min(best, time.perf_counter() - t)
    if n < 2**24 * 32 and total != n:  # each float read once: n ones sum to n exactly
        raise RuntimeError(f"lm_read summed {n} ones to {total}")
    return n * 4 / best / 1e9


def supports(model) -> bool:
    """A plain fp32 CPU model (``LlamaStep.supports`` already holds) whose projections and head
    are plain ``nn.Linear`` with contiguous weights: what ``native.c`` reads."""
    m = model.model
    mods = [model.lm_head]
    for layer in m.layers:
        a, mlp = layer.self_attn, layer.mlp
        mods += [a.q_proj, a.k_proj, a.v_proj, a.o_proj, mlp.gate_proj, mlp.up_proj,
                 mlp.down_proj]
    tensors = [mod.weight for mod in mods] + [m.embed_tokens.weight, m.norm.weight]
    cfg = model.config
    return (all(type(mod) is torch.nn.Linear for mod in mods)
            and all(type(t) in (torch.Tensor, torch.nn.Parameter) and t.dtype == torch.float32
                    and t.device.type == "cpu" and t.is_contiguous() for t in tensors)
            and cfg.num_attention_heads % cfg.num_key_value_heads == 0)


WTYPE = {"fp32": 0, "bf16": 1, "int8": 2}  # native.c's W_F32, W_BF16, W_I8
ISA = {"auto": 0, "generic": 1, "avx2": 2, "avx512": 3}  # native.c's int8 kernels (ISA_*)


def amx_wanted() -> bool:
    """Whether bf16 products of 5+ inputs may run on AMX tiles where the CPU has them and
    Linux grants them (``LMLAB_NATIVE_AMX=0``: never; the FMA kernels, inputs kept fp32)."""
    want = os.environ.get("LMLAB_NATIVE_AMX", "1").strip()
    if want not in ("0", "1"):
        raise ValueError(f"LMLAB_NATIVE_AMX: 0 or 1, got {want!r}")
    return want == "1"


def isa_wanted() -> str:
    """The int8 kernel ``LMLAB_NATIVE_ISA`` asks for (default ``auto``: the best this CPU has)."""
    want = os.environ.get("LMLAB_NATIVE_ISA", "auto").strip().lower() or "auto"
    if want not in ISA:
        raise ValueError(f"LMLAB_NATIVE_ISA: one of {', '.join(ISA)}, got {want!r}")
    return want


def int8_kernel(want: str | None = None) -> str | None:
    """The int8 kernel that runs here for ``want`` (default: ``isa_wanted()``): "avx512" (VNNI),
    "avx2" or "generic"; None without the library."""
    lib = load()
    if lib is None:
        return None
    got = lib.lm_q8_isa(ISA[isa_wanted() if want is None else want])
    return next(k for k, v in ISA.items() if v == got)


def q8_matvec(block: torch.Tensor, rows: int, x: torch.Tensor, isa: str = "auto"
              ) -> tuple[torch.Tensor, str]:
    """The C int8 product alone: ``x`` (M, K) fp32 times the ``int8_block`` ``block`` of
    ``rows`` rows -> ((M, rows), the kernel that ran); one thread (kernel tests)."""
    lib = load()
    x = x.detach().float().contiguous()
    M, K = x.shape
    if block.numel() != rows * (K + 2 * blocks(K)):
        raise ValueError(f"int8 block of {block.numel()} bytes is not {rows} rows of {K}")
    y = torch.empty(M, rows)
    got = lib.lm_q8_matvec(block.data_ptr(), rows, K, x.data_ptr(), M, y.data_ptr(), ISA[isa])
    return y, next(k for k, v in ISA.items() if v == got)


def bf16_matvec(w: torch.Tensor, x: torch.Tensor, amx: bool = True
                ) -> tuple[torch.Tensor, bool]:
    """The C bf16 product alone: ``x`` (M, K) fp32 times the bf16 rows ``w`` (R, K) ->
    ((M, R), whether it ran on AMX tiles); one thread (kernel tests)."""
    lib = load()
    x = x.detach().float().contiguous()
    w = w.detach().contiguous()
    if w.dtype != torch.bfloat16 or w.shape[1] != x.shape[1]:
        raise ValueError(f"bf16 rows of {x.shape[1]} wanted, got {w.dtype} {tuple(w.shape)}")
    y = torch.empty(x.shape[0], w.shape[0])
    tiles = lib.lm_bf16_matvec(w.data_ptr(), w.shape[0], x.shape[1], x.data_ptr(), x.shape[0],
                               y.data_ptr(), int(amx))
    return y, bool(tiles)


def steal_test(delay_us: int) -> int:
    """Tests: hold the step's thread 0 back ``delay_us`` microseconds at the start of each
    product whose rows are handed out in chunks (0: not at all), so that the other threads
    take its rows; returns the chunks taken from another thread's share so far."""
    return int(load().lm_steal_test(int(delay_us)))


def step_for(model, step, weights: str = "fp32") -> NativeStep | None:
    """The C step for ``model`` (its constants from the ``LlamaStep`` ``step``), or None where
    it does not apply: a model ``supports`` rejects, or no library here. ``weights``: see
    ``NativeStep``. With fp32 weights the model's parameters move first into one buffer in
    the step's read order, on huge pages (``arena.rehome``: same values, faster to stream)."""
    if not (supports(model) and available()):
        return None
    params = arena.step_params(model)
    if weights == "fp32":
        arena.rehome(model, params)  # (the same Parameter objects, new storage)
    return NativeStep(model, step, weights, params)


class _Copies(dict):
    """A model's narrow weight copies (bfloat16, or int8 blocks), by source tensor: (tensor's
    version, weak reference, copy). A copied model makes its own."""

    def __deepcopy__(self, memo) -> _Copies:
        return _Copies()


def bf16_copy(model, t: torch.Tensor) -> torch.Tensor:
    """A contiguous bfloat16 copy of the weight ``t`` of ``model``, kept on the model (made once;
    made again when ``t`` changed in place or was replaced)."""
    return bf16_copies(model, [t])[0]


def bf16_copies(model, ts: list) -> list:
    """``bf16_copy`` of each of ``ts``; the copies made now lie in one buffer in this order
    (``arena.empty``: huge pages, the order a step reads them), unless ``LMLAB_ARENA=0``."""
    return narrow_copies(model, ts, "bf16")


def int8_block(w: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """The int8 block native.c reads for a weight (R, K): R x blocks(K) fp16 scales, then the
    R x K weights q (``precision.quantize_blocks``) as bytes q ^ 0x80 (q + 128, the unsigned
    operand of VNNI's byte products), as one uint8 tensor (written into ``out`` when given)."""
    q, scale = quantize_blocks(w)
    R, K = q.shape
    nb = 2 * R * blocks(K)
    out = torch.empty(nb + R * K, dtype=torch.uint8) if out is None else out
    out[:nb].view(torch.float16).view(R, -1).copy_(scale)
    out[nb:].view(R, K).copy_(q.view(torch.uint8) ^ 0x80)
    return out


def int8_parts(block: torch.Tensor, rows: int, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(q int8 (rows, K), scale fp32 (rows, blocks(K))) of an ``int8_block`` of ``rows`` x ``K``."""
    nb = 2 * rows * blocks(K)
    scale = block[:nb].view(torch.float16).view(rows, -1).float()
    return (block[nb:].view(rows, K) ^ 0x80).view(torch.int8), scale


def _block_bytes(t: torch.Tensor) -> int:
    return t.shape[0] * (t.shape[1] + 2 * blocks(t.shape[1]))


def narrow_copies(model, ts: list, weights: str) -> list:
    """Copies of the weights ``ts`` of ``model`` at ``weights`` ("bf16": bfloat16 tensors;
    "int8": ``int8_block``s), kept on the model (made once; made again when a tensor changed in
    place or was replaced); the copies made now lie in one buffer in this order
    (``arena.empty``: huge pages, the order a step reads them), unless ``LMLAB_ARENA=0``."""
    attr = "_lmlab_bf16" if weights == "bf16" else "_lmlab_int8"
    store = getattr(model, attr, None)
    if store is None:
        store = _Copies()
        object.__setattr__(model, attr, store)

    def fresh(t):
        have = store.get(t.data_ptr())
        return have is not None and have[0] == t._version and have[1]() is t

    todo = list({id(t): t for t in ts if not fresh(t)}.values())
    if todo and weights == "int8":
        if arena.enabled():
            news = arena.empty([((_block_bytes(t),), torch.uint8) for t in todo])
            news = [int8_block(t, n) for t, n in zip(todo, news)]
        else:
            news = [int8_block(t) for t in todo]
        for t, n in zip(todo, news):
            store[t.data_ptr()] = (t._version, weakref.ref(t), n)
    elif todo:
        if arena.enabled():
            news = arena.empty([(t.shape, torch.bfloat16) for t in todo])
            with torch.no_grad():
                for t, n in zip(todo, news):
                    n.copy_(t.detach())
        else:
            news = [t.detach().to(torch.bfloat16).contiguous() for t in todo]
        for t, n in zip(todo, news):
            store[t.data_ptr()] = (t._version, weakref.ref(t), n)
    return [store[t.data_ptr()][2] for t in ts]


_data_ptr = torch.Tensor.data_ptr
# tokens a greedy C call runs while its thread count is being chosen (lmlab.infer.threads):
# each call's seconds a token are what the choice reads
ADAPT_RUN = 16
# batched steps pooled into one timing of the thread choice (lmlab.infer.threads.Pooled)
ADAPT_STEPS = 8
# the thread choices (lmlab.infer.threads), per model: {(weights, threads): ThreadChoice}, and
# for batched steps {(weights, threads, shape class): Pooled}
_CHOICES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class NativeStep:
    """``LlamaStep.step`` for small steps, through ``native.c``. Holds pointers to the model's
    weights (its parameters, not copies: valid while the model lives and is not moved) and a
    workspace; the key/value buffers are the ``LlamaStep``'s, passed at each call."""

    def __init__(self, model, step, weights: str = "fp32", params: list | None = None):
        """``step``: the ``LlamaStep`` (its constants: heads, eps, scale, RoPE). ``weights``:
        "bf16" reads bfloat16 copies of the projections and the head (half the bytes per
        token), "int8" int8 copies in blocks of 32 (~a quarter; ``narrow_copies``) -
        results then those of the rounded weights (``precision.rounded``), not the fp32
        step's: a model decoded at that precision, or a speculative draft, whose precision
        only moves its acceptance rate. ``params``: ``arena.step_params(model)`` when the
        caller has it (native.c reads the layers' nine tensors in that order)."""
        self.lib = load()
        self._model = weakref.ref(model)  # (its thread choice: _thread_choice)
        cfg, m = model.config, model.model
        if weights not in WTYPE:
            raise ValueError(f"weights: one of {', '.join(WTYPE)}, got {weights!r}")
        self.weights = weights
        self.bf16 = weights == "bf16"
        params = arena.step_params(model) if params is None else params
        if weights != "fp32":  # the matrices as narrow copies, made up front in read order
            low = iter(narrow_copies(model, [t for t in params if t.dim() == 2], weights))
            params = [next(low) if t.dim() == 2 else t for t in params]
        *layers, norm, head = params
        # every tensor the pointers refer to, held here (detached: their storage, even if a
        # parameter's storage is later swapped): a parameter replaced on the model (not
        # updated in place) leaves this step reading the old one, never freed memory
        self.keep = [step.inv_freq.contiguous(), m.embed_tokens.weight.detach(),
                     norm.detach(), head.detach()] + [t.detach() for t in layers]
        self.layer_ptrs = (ctypes.c_void_p * len(layers))(*[t.data_ptr() for t in layers])
        self.V, self.D = model.lm_head.weight.shape
        self.cfg = _Model(cfg.hidden_size, step.H, step.Hkv, step.Dh, cfg.intermediate_size,
                          self.V, cfg.num_hidden_layers, step.eps, step.scale, step.rope_scale,
                          self.keep[0].data_ptr(), m.embed_tokens.weight.data_ptr(),
                          norm.data_ptr(), head.data_ptr(), self.V, None, 0, WTYPE[weights],
                          ctypes.cast(self.layer_ptrs, ctypes.c_void_p), ATT_CHUNK,
                          ISA[isa_wanted()], int(amx_wanted()))
        self.work = torch.empty(0)
        self._need = (None, 0)  # ((inputs, buffer length), workspace floats) of the last call
        self._cfg_ref = ctypes.byref(self.cfg)
        self._kv = None  # (the buffers' data pointers, pointer arrays), see _kv_ptrs
        self._rows = (None, None, 0)  # the last head_rows given, the extra rows as read, count

    def _set_head(self, rows) -> int:
        """Point the head at ``rows`` = (first, extra): the LM head's first rows, then the rows
        of ``extra`` (E, D), or at the whole LM head (None). Returns the logits' width."""
        c = self.cfg
        if rows is None:
            c.Vh, c.head_x, c.Vx = self.V, None, 0
            return self.V
        first, extra = rows
        if self._rows[0] is not rows:
            if extra.dim() != 2 or (extra.shape[0] and extra.shape[1] != self.D) or \
                    not 0 <= first <= self.V:
                raise ValueError(f"head rows: first {first} of {self.V}, extra "
                                 f"{tuple(extra.shape)} (need (E, {self.D}))")
            if self.weights == "int8":
                x = int8_block(extra) if extra.shape[0] else extra
            else:
                x = extra.detach().to(torch.bfloat16 if self.bf16 else torch.float32)
            self._rows = (rows, x.contiguous(), extra.shape[0])
        x, E = self._rows[1], self._rows[2]
        c.Vh, c.head_x, c.Vx = first, (x.data_ptr() if E else None), E
        return first + E

    def _workspace(self, M: int, T: int) -> None:
        """A workspace large enough for a step of ``M`` inputs over buffers of ``T`` tokens
        (its size asked of native.c once per change of (M, T); grown, never shrunk)."""
        if self._need[0] != (M, T):
            self._need = ((M, T), self.lib.lm_work_floats(self._cfg_ref, M, T))
            if self.work.numel() < self._need[1]:
                self.work = torch.empty(self._need[1])

    def _kv_ptrs(self, kb: list, vb: list):
        """Pointer arrays for the buffers, made again when any buffer's data pointer changed
        (``LlamaStep.ensure`` replaces tensors in place in its lists)."""
        ptrs = list(map(_data_ptr, kb)), list(map(_data_ptr, vb))
        have = self._kv
        if have is None or have[0] != ptrs:
            n = len(kb)
            have = self._kv = (ptrs, (ctypes.c_void_p * n)(*ptrs[0]),
                               (ctypes.c_void_p * n)(*ptrs[1]))
        return have[1], have[2]

    def step(self, kb: list, vb: list, tokens: torch.Tensor, pos: torch.Tensor, n: int,
             mask: torch.Tensor | None, last_only: bool, hidden: bool,
             cols: torch.Tensor | None = None, head_rows=None) -> torch.Tensor:
        """As ``LlamaStep.step`` over buffers ``kb`` / ``vb`` -> logits (B, L', V), or the final
        normed hidden states (B, L', D) with ``hidden``. ``cols`` (B, L): the buffer column
        each token writes its key/value to and the last column it attends to, in place of the
        common n-L .. n-1 (the server's rows of different lengths, no mask). ``head_rows`` =
        (first, extra): logits over only the LM head's first ``first`` rows, then one per row
        of ``extra`` (E, D) (a draft scoring part of the vocabulary), (B, L', first + E)."""
        # (each torch call here costs several us once the step has streamed the weights
        # through the caches: only what is needed; a decode step spends ~0.1 ms in this
        # function, 2026-12-05)
        B, L = tokens.shape
        T = kb[0].shape[2]
        if tokens.dtype != torch.long or not tokens.is_contiguous():
            tokens = tokens.to(torch.long).contiguous()
        if pos.dtype != torch.long or pos.shape != (B, L) or not pos.is_contiguous():
            pos = pos.to(torch.long).expand(B, L).contiguous()
        mask_ld = 0
        if mask is not None:
            if mask.dtype != torch.long or mask.stride(-1) != 1:
                mask = mask.to(torch.long).contiguous()
            mask_ld = mask.stride(0)
        if cols is not None:
            cols = cols.reshape(-1).to(torch.long).contiguous()
        self._workspace(B * L, T)
        R = B if last_only else B * L
        width = self._set_head(None if hidden else head_rows)
        out = torch.empty(B, R // B, self.D if hidden else width)
        kp, vp = self._kv_ptrs(kb, vb)
        choice = self._thread_choice(shape_class(B * L, R))
        nt = torch.get_num_threads() if choice is None else choice.pick()
        t0 = time.perf_counter()
        rc = self.lib.lm_step(
            self._cfg_ref, tokens.data_ptr(), pos.data_ptr(), B, L, n,
            mask.data_ptr() if mask is not None else None, mask_ld,
            cols.data_ptr() if cols is not None else None, kp, vp, T,
            self.work.data_ptr(), out.data_ptr(), int(last_only), int(hidden), nt)
        if choice is not None and rc == 0:
            choice.record(nt, time.perf_counter() - t0)
        if rc == -1:
            bad = tokens[(tokens < 0) | (tokens >= self.V)][:1].tolist()
            raise ValueError(f"token id {bad} outside the vocabulary (0 .. {self.V - 1})")
        if rc != 0:
            raise RuntimeError(f"native step failed (code {rc}: n={n}, L={L}, T={T}, columns "
                               f"{None if cols is None else cols.tolist()})")
        return out

    def _thread_choice(self, shape: tuple | None = None) -> ThreadChoice | Pooled | None:
        """How C calls pick their thread count (``lmlab.infer.threads``: torch's count, or one
        fewer while that has proved faster), None where they keep torch's: greedy runs' choice
        (``shape`` None), or the batched steps' of one ``shape_class`` (``ADAPT_STEPS`` steps
        pooled a timing). One choice per model, precision, thread count (and shape) for the
        process, so later generations start informed."""
        model = self._model()
        if not adapting() or model is None:
            return None
        want = torch.get_num_threads()
        per = _CHOICES.setdefault(model, {})
        if shape is None:
            return per.setdefault((self.weights, want), ThreadChoice(want))
        key = (self.weights, want, shape)
        got = per.get(key)
        if got is None:
            got = per[key] = Pooled(ThreadChoice(want), ADAPT_STEPS)
        return got

    def greedy(self, kb: list, vb: list, token: int, pos: int, n: int, steps: int,
               stop_ids=(), head_rows=None, ids: torch.Tensor | None = None
               ) -> tuple[list[int], torch.Tensor]:
        """Greedy decoding of one unpadded row in C (one call, or calls of ``ADAPT_RUN``
        tokens while the thread count is chosen, ``_thread_choice``): ``token`` at ``pos``
        fills buffer column n-1, then each step's argmax is the next input, for ``steps``
        tokens or until one in ``stop_ids``. ``head_rows`` as in ``step``, with ``ids`` the
        token ids of its extra rows (a draft over part of the vocabulary). -> (the tokens,
        their steps' logits (k, width)); the buffers then hold n + k - 1 tokens. Each step is
        ``step``'s one-token step (its logits bit for bit), no Python between a call's tokens."""
        T = kb[0].shape[2]
        if kb[0].shape[0] != 1 or not 1 <= n or n + steps - 1 > T:
            raise ValueError(f"greedy run: one row and n + steps - 1 <= {T} buffer columns "
                             f"(rows {kb[0].shape[0]}, n={n}, steps={steps})")
        self._workspace(1, T)
        width = self._set_head(head_rows)
        extra = width - self.cfg.Vh
        if extra and (ids is None or ids.dtype != torch.long or ids.shape != (extra,)
                      or not ids.is_contiguous()):
            raise ValueError(f"greedy run: the head's {extra} extra rows need their token ids "
                             f"(a contiguous int64 tensor of {extra})")
        logits = torch.empty(steps, width)
        out = torch.empty(steps, dtype=torch.long)
        stop = torch.tensor(sorted(stop_ids), dtype=torch.long)
        kp, vp = self._kv_ptrs(kb, vb)
        choice, done = self._thread_choice(), 0
        while done < steps:  # C calls of at most ADAPT_RUN tokens while the count is chosen
            nt = torch.get_num_threads() if choice is None else choice.pick()
            part = steps - done if choice is None else min(ADAPT_RUN, steps - done)
            t0 = time.perf_counter()
            k = self.lib.lm_greedy(self._cfg_ref, int(token), int(pos) + done, n + done, part,
                                   stop.data_ptr() if len(stop) else None, len(stop),
                                   ids.data_ptr() if extra else None, kp, vp, T,
                                   self.work.data_ptr(), logits[done:].data_ptr(),
                                   out[done:].data_ptr(), nt)
            if k == -1:
                raise ValueError(f"token id {int(token)} outside the vocabulary "
                                 f"(0 .. {self.V - 1})")
            if k < 0:
                raise RuntimeError(f"native greedy run failed (code {k}: n={n + done}, "
                                   f"steps={part}, T={T})")
            if choice is not None and k > 0:
                choice.record(nt, (time.perf_counter() - t0) / k)
            done += k
            if k < part:  # a stop token
                break
            token = int(out[done - 1])
        return out[:done].tolist(), logits[:done]
