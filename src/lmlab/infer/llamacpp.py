"""llama.cpp as a decoding engine (``engine=llama.cpp`` in generate and serve).

llama.cpp, through the ``llama-cpp-python`` bindings (the ``llamacpp`` extra, built from
source: docs/llamacpp.md), runs the forward passes of a GGUF file; the tokens are still chosen
by ``lmlab.infer.sampling`` and the stop rules of ``lmlab.infer.decode``, so a setting means
the same thing with either engine and only the arithmetic differs (f16 / q8_0 / q4 weights,
llama.cpp's kernels).

The model reference is a ``.gguf`` file (used as it is; its tokenizer is read from it by
transformers), or any model reference ``load_model`` takes (alias, run folder, folder, tiny),
exported once by ``quant.export.export_gguf`` to ``<cache>/gguf/<key>/model.<type>.gguf`` and
reused while the model's files are unchanged.

``LlamaCppKV`` is the forward-with-cache that ``serve.runner.Runner`` drives (its ``prefill``
/ ``decode`` / ``release``), one llama.cpp sequence per running request, all decoded in one
``llama_decode`` batch; ``generate`` is the same for a list of prompts. It uses the C API of
the bindings (``llama_batch`` with several sequence ids) because ``llama_cpp.Llama`` decodes one
sequence at a time.

Legend: B sequences in a step, V vocabulary.
"""

from __future__ import annotations

import ctypes
import hashlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from lmlab.errors import ModelRefError, UserError

EXTRA = "llamacpp"
INSTALL_HINT = (
    "engine=llama.cpp needs llama-cpp-python, an optional extra built from source (~6 min "
    "on 2 cores): CMAKE_ARGS=\"-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_AVX512=ON "
    "-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF\" pip install "
    f"'lmlab[{EXTRA}]' (docs/llamacpp.md lists the flags per CPU); or use engine=lmlab")
GGUF_TYPES = ("f16", "q8_0", "q4_0", "q4_1")
_EXPORT_VERSION = "2"  # cache key part: bump when export_gguf writes other files (2: pre label)


def require():
    """The ``llama_cpp`` module, or a UserError that says how to install it."""
    try:
        import llama_cpp
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    try:  # llama.cpp logs every tensor it loads to stderr; keep its errors only
        from llama_cpp import _logger

        _logger.set_verbose(False)
    except ImportError:  # pragma: no cover - a bindings version without the logger
        pass
    return llama_cpp


def version() -> str | None:
    try:
        import llama_cpp
    except ImportError:
        return None
    return getattr(llama_cpp, "__version__", "?")


# ----------------------------------------------------------------------------- the GGUF file


def is_gguf(ref: str) -> bool:
    return isinstance(ref, str) and ref.lower().endswith(".gguf")


def gguf_file(ref: str, ftype: str = "q8_0") -> Path:
    """The GGUF file for a model reference: a .gguf file itself, else the model exported to
    ``ftype`` once and cached (the export prints a line; later calls reuse the file)."""
    from lmlab.common import cache_dir, print0

    if is_gguf(ref):
        p = Path(ref).expanduser()
        if not p.is_file():
            raise ModelRefError(f"{ref}: no such GGUF file")
        from lmlab.models.check import gguf_problem

        problem = gguf_problem(p)
        if problem:
            raise ModelRefError(f"{ref}: {problem}")
        return p
    if ftype not in GGUF_TYPES:
        raise UserError(f"gguf: '{ftype}' is not one of {', '.join(GGUF_TYPES)}")
    out = cache_dir() / "gguf" / _cache_key(ref) / f"model.{ftype}.gguf"
    if out.is_file():
        return out
    from lmlab.models import load_model, load_tokenizer
    from lmlab.quant.export import export_gguf

    print0(f"[lmlab] exporting {ref} to {out} for llama.cpp (once) ...")
    model = load_model(ref, merge_adapter=True).eval()
    return export_gguf(model, load_tokenizer(ref), out, ftype)


def _cache_key(ref: str) -> str:
    """Names the export of ``ref``: aliases, tiny presets and hub ids by name; folders by their
    absolute path and the size and time of each file in them (a retrained run gets a new key)."""
    from lmlab.models import resolve

    r = resolve(ref)
    parts = [_EXPORT_VERSION, r.kind, r.ref if r.kind in ("alias", "tiny", "hub") else ""]
    for folder in filter(None, (r.path if r.kind in ("folder", "adapter") else None,)):
        root = Path(folder).resolve()
        parts.append(str(root))
        for f in sorted(root.iterdir()):
            if f.is_file():
                st = f.stat()
                parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    if r.kind == "adapter":
        parts.append(_cache_key(r.base))
    name = Path(r.path).name if r.kind in ("folder", "adapter") else r.ref
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)[-40:]
    return f"{safe}-{hashlib.sha1('|'.join(parts).encode()).hexdigest()[:12]}"


def gguf_tokenizer(path: Path):
    """The tokenizer held by a GGUF file (transformers reads it; ~10 s for a 49k vocabulary)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def open_model(ref: str, ftype: str = "q8_0", *, prompts: list | None = None,
               max_new_tokens: int = 0, tokenizer=None, **kw) -> tuple[LlamaCpp, object]:
    """(LlamaCpp, tokenizer) for a model reference (see the module docstring); ``tokenizer``
    instead of the model's own (a caller that has it loaded). With ``prompts``, the KV cache
    is sized for ``n_seq`` of the longest prompt plus ``max_new_tokens`` (not the model's
    whole context per sequence)."""
    if not is_gguf(ref):
        require()  # before a slow export
    path = gguf_file(ref, ftype)
    require()
    if tokenizer is None and is_gguf(ref):
        tokenizer = gguf_tokenizer(path)
    elif tokenizer is None:
        from lmlab.models import load_tokenizer

        tokenizer = load_tokenizer(ref)
    if prompts:
        from lmlab.infer.decode import encode_prompts

        longest = max(len(e) for e in encode_prompts(tokenizer, prompts)) + max_new_tokens
        kw["n_ctx"] = max(256, kw.get("n_seq", 8) * longest)
    return LlamaCpp(path, **kw), tokenizer


# ----------------------------------------------------------------------------- the model


class LlamaCpp:
    """A GGUF model in a llama.cpp context with ``n_seq`` sequences sharing ``n_ctx`` KV cells
    (a unified cache: one long sequence may use what short ones leave).

    ``config.max_position_embeddings`` is the longest one sequence may grow (the model's
    trained context or ``n_ctx``, whichever is less), so ``decode.check_context`` works on it;
    ``generation_config.eos_token_id`` is the file's EOS (``decode.eos_ids`` reads it)."""

    def __init__(self, path: str | Path, *, n_seq: int = 8, n_ctx: int = 4096, threads: int = 0,
                 n_batch: int = 512):
        lc = self.lc = require()
        lc.llama_backend_init()
        n_seq = min(max(1, n_seq), lc.llama_max_parallel_sequences())
        self.path = Path(path)
        mp = lc.llama_model_default_params()
        self.model = lc.llama_model_load_from_file(str(path).encode(), mp)
        if not self.model:
            raise ModelRefError(f"llama.cpp could not load {path} (see the lines above)")
        cp = lc.llama_context_default_params()
        cp.n_ctx, cp.n_seq_max = n_ctx, n_seq
        cp.n_batch = cp.n_ubatch = self.n_batch = max(n_batch, n_seq)
        cp.n_threads = cp.n_threads_batch = threads or torch.get_num_threads()
        cp.kv_unified = True
        self.ctx = lc.llama_init_from_model(self.model, cp)
        if not self.ctx:
            lc.llama_model_free(self.model)
            raise UserError(f"llama.cpp could not make a context of {n_ctx} tokens for {path}")
        self.batch = lc.llama_batch_init(self.n_batch, 0, 1)
        self.mem = lc.llama_get_memory(self.ctx)
        vocab = lc.llama_model_get_vocab(self.model)
        self.n_vocab = lc.llama_vocab_n_tokens(vocab)
        self.n_seq, self.n_ctx, self.threads = n_seq, lc.llama_n_ctx(self.ctx), cp.n_threads
        ctx_len = min(lc.llama_model_n_ctx_train(self.model), self.n_ctx)
        self.config = SimpleNamespace(max_position_embeddings=ctx_len)
        self.generation_config = SimpleNamespace(eos_token_id=[lc.llama_vocab_eos(vocab)])
        self.device = torch.device("cpu")

    def close(self) -> None:
        if getattr(self, "ctx", None):
            self.lc.llama_batch_free(self.batch)
            self.lc.llama_free(self.ctx)
            self.lc.llama_model_free(self.model)
            self.ctx = None

    def __del__(self):  # pragma: no cover - interpreter shutdown order varies
        if getattr(self, "lc", None) is not None and getattr(self.lc, "llama_free", None):
            self.close()

    def clear(self) -> None:
        """Forget every sequence's cache."""
        self.lc.llama_memory_clear(self.mem, True)

    def drop(self, seq: int) -> None:
        self.lc.llama_memory_seq_rm(self.mem, seq, -1, -1)

    def run(self, items: list[tuple[int, int, int, bool]]) -> torch.Tensor:
        """Feed (token, position, sequence, want logits) items, in batches of ``n_batch``;
        the next-token logits of the items that want them, in order: (n, V) float32."""
        out = []
        b = self.batch
        for s in range(0, len(items), self.n_batch):
            part = items[s:s + self.n_batch]
            want = []
            for i, (tok, pos, seq, logits) in enumerate(part):
                b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, pos, 1, int(logits)
                b.seq_id[i][0] = seq
                if logits:
                    want.append(i)
            b.n_tokens = len(part)
            rc = self.lc.llama_decode(self.ctx, b)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc} ({len(part)} tokens; 1 = no "
                                   f"room in the {self.n_ctx}-token KV cache)")
            for i in want:
                ptr = self.lc.llama_get_logits_ith(self.ctx, i)
                out.append(np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(
                    ctypes.c_float)), shape=(self.n_vocab,)).copy())
        return torch.from_numpy(np.stack(out)) if out else torch.empty(0, self.n_vocab)


class LlamaCppKV:
    """The ``serve.runner`` KV protocol over llama.cpp: each running sequence is one llama.cpp
    sequence id (a free "slot"); its cache lives in llama.cpp."""

    def __init__(self, llm: LlamaCpp):
        self.llm = llm
        self.free = list(range(llm.n_seq - 1, -1, -1))
        self.slot: dict[str, int] = {}
        self.lens: dict[str, int] = {}

    def prefill(self, sids: list[str], seqs: list[list[int]]) -> torch.Tensor:
        """New sequences (whole prompts); next-token logits (b, V)."""
        items = []
        for sid, ids in zip(sids, seqs):
            if not self.free:
                raise RuntimeError(f"llama.cpp: all {self.llm.n_seq} sequences are in use")
            slot = self.slot[sid] = self.free.pop()
            self.llm.drop(slot)
            self.lens[sid] = len(ids)
            items += [(t, p, slot, p == len(ids) - 1) for p, t in enumerate(ids)]
        return self.llm.run(items)

    def decode(self, sids: list[str], tokens: list[int]) -> torch.Tensor:
        """Each sequence's last token at its next position; logits (B, V) in ``sids`` order."""
        items = [(t, self.lens[s], self.slot[s], True) for s, t in zip(sids, tokens)]
        for s in sids:
            self.lens[s] += 1
        return self.llm.run(items)

    def release(self, sid: str) -> None:
        slot = self.slot.pop(sid, None)
        self.lens.pop(sid, None)
        if slot is not None:
            self.llm.drop(slot)
            self.free.append(slot)


# ----------------------------------------------------------------------------- generate


def generate(llm: LlamaCpp, tokenizer, prompts: list, params=None, *, batch_size: int = 8,
             generator: torch.Generator | None = None) -> list:
    """``infer.decode.generate`` with llama.cpp's forward: each prompt completed under
    ``params`` (our transforms, sampler and stop rules), ``batch_size`` prompts decoded
    together (one llama.cpp sequence each, every step one batched ``llama_decode``)."""
    from lmlab.infer.decode import (
        Completion,
        StopStrings,
        check_context,
        completion_text,
        encode_prompts,
        eos_ids,
    )
    from lmlab.infer.sampling import SamplingParams, make_generator

    params = params or SamplingParams()
    if batch_size < 1:
        raise UserError(f"batch_size: must be >= 1, got {batch_size}")
    encoded = encode_prompts(tokenizer, prompts)
    check_context(llm, [len(e) for e in encoded], params.max_new_tokens)
    if generator is None and not params.greedy:
        generator = make_generator(params.seed)
    stops = StopStrings(tokenizer, params.stop)
    eos = [] if params.ignore_eos else eos_ids(llm, tokenizer)
    stop_ids = set(eos) | set(params.stop_token_ids)
    out: list = [None] * len(encoded)
    per = min(batch_size, llm.n_seq)
    for s in range(0, len(encoded), per):
        idx = list(range(s, min(len(encoded), s + per)))
        res = _decode_rows(llm, [encoded[i] for i in idx], params, generator, stop_ids, stops)
        for i, (toks, why, lps) in zip(idx, res):
            out[i] = Completion(prompts[i], completion_text(tokenizer, toks, why, stops), toks,
                                why, len(encoded[i]), lps)
    return out


def _decode_rows(llm: LlamaCpp, rows: list[list[int]], params, generator, stop_ids: set,
                 stops) -> list[tuple[list[int], str, list | None]]:
    """One batch of prompts to the end: (tokens, finish reason, logprobs) per row."""
    from lmlab.infer.sampling import History, apply_transforms, build_transforms, pick

    B = len(rows)
    results: list = [([], "length", [] if params.logprobs else None) for _ in rows]
    if params.max_new_tokens == 0:
        return results
    kv = LlamaCppKV(llm)
    llm.clear()
    sids = [str(j) for j in range(B)]
    logits = kv.prefill(sids, rows)  # (B, V)
    transforms = build_transforms(params, eos_token_ids=sorted(stop_ids))
    P = max(len(r) for r in rows)
    hist = torch.full((B, P + params.max_new_tokens), -1, dtype=torch.long)
    for j, r in enumerate(rows):  # left padded, as decode.stream_tokens keeps it
        hist[j, P - len(r):P] = torch.tensor(r)
    active = list(range(B))
    for t in range(params.max_new_tokens):
        processed = apply_transforms(logits, transforms, History(hist[active, :P + t], P)) \
            if transforms else logits
        nxt = pick(processed, params.greedy, generator).tolist()
        keep = []
        for j, (r, tok) in enumerate(zip(active, nxt)):
            toks, _, lps = results[r]
            toks.append(tok)
            hist[r, P + t] = tok
            if lps is not None:
                src = logits if params.logprobs_mode == "raw" else processed
                lps.append(float(src[j].float().log_softmax(-1)[tok]))
            why = "eos" if tok in stop_ids else "stop" if stops.hit(toks) else \
                "length" if t + 1 >= params.max_new_tokens else None
            if why:
                results[r] = (toks, why, lps)
                kv.release(sids[r])
            else:
                keep.append(j)
        if not keep:
            break
        active = [active[j] for j in keep]
        logits = kv.decode([sids[r] for r in active], [results[r][0][-1] for r in active])
    llm.clear()
    return results
