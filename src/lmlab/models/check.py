"""What is wrong with a model folder, said before transformers tries to load it.

Each check reads only small things (``config.json``, the 8-byte length and the JSON header of
each safetensors file, a GGUF file's first bytes), so ``resolve`` can run them before a stage
writes anything, and each failure is a ``ModelRefError`` naming the folder and the file or field
to fix. What these checks do not catch, the loaders' boundary in ``load.py`` still reports.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

from lmlab.errors import DataError, ModelRefError
from lmlab.textfile import read_text

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def read_config(folder: Path) -> dict:
    """``config.json`` as a dict whose ``model_type`` transformers knows."""
    f = folder / "config.json"
    try:  # the one reader of users' text files: a BOM reads as plain, a bad byte is located
        config = json.loads(read_text(f))
    except DataError as e:
        raise ModelRefError(str(e)) from None
    except json.JSONDecodeError as e:
        raise ModelRefError(f"{f}:{e.lineno}: not valid JSON ({e.msg}, column {e.colno})") from None
    if not isinstance(config, dict):
        raise ModelRefError(f"{f}: expected a JSON object, got {type(config).__name__}")
    check_model_type(f, config)
    return config


def check_model_type(file: Path, config: dict) -> None:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    kind = config.get("model_type")
    if not kind:
        raise ModelRefError(f"{file}: field 'model_type' is missing; transformers needs it to "
                            f"pick the architecture (e.g. \"llama\")")
    if kind not in CONFIG_MAPPING_NAMES:
        close = difflib.get_close_matches(str(kind), list(CONFIG_MAPPING_NAMES), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        arch = config.get("architectures")
        named = f", architectures {arch}" if arch else ""
        raise ModelRefError(f"{file}: field 'model_type': '{kind}'{named} is an architecture "
                            f"this transformers does not know{hint}; upgrade transformers if the "
                            f"model is newer than it")


def check_causal_lm(folder: Path, config: dict) -> None:
    """Refuse a model transformers has no causal-LM class for (an encoder, a seq2seq model)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if config.get("model_type") not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelRefError(f"{folder / 'config.json'}: field 'model_type': a "
                            f"'{config.get('model_type')}' model has no causal-LM form; lmlab "
                            f"trains and generates with decoder (causal) language models")


def check_weights(folder: Path, weights_file: str | None = None) -> None:
    """A weights file is there and every safetensors file is as long as its header says."""
    names = (weights_file,) if weights_file else WEIGHT_FILES
    present = [n for n in names if (folder / n).is_file()]
    if not present:
        raise ModelRefError(f"{folder} has a config.json but no weights (expected "
                            f"{' or '.join(names)}); an interrupted save or copy?")
    for name in present:
        if name.endswith(".index.json"):
            _check_shards(folder, folder / name)
        elif name.endswith(".safetensors"):
            check_safetensors(folder / name)


def _check_shards(folder: Path, index: Path) -> None:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ModelRefError(f"{index}: not a shard index (a JSON object with 'weight_map' "
                            f"naming each tensor's file)") from None
    missing = [s for s in shards if not (folder / s).is_file()]
    if missing:
        raise ModelRefError(f"{index} names shards that are not in {folder}: {missing[:3]}")
    for s in shards:
        if s.endswith(".safetensors"):
            check_safetensors(folder / s)


def check_safetensors(file: Path) -> None:
    """The 8-byte header length, the JSON header, and the file long enough for every tensor."""
    size = file.stat().st_size
    with open(file, "rb") as fh:
        head = fh.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 2 or 8 + n > size:
            raise ModelRefError(f"{file} is truncated or not a safetensors file ({size} bytes; "
                                f"its header is incomplete): copy or save it again")
        try:
            header = json.loads(fh.read(n))
            end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"),
                      default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            raise ModelRefError(f"{file} is damaged: its header is not a safetensors "
                                f"header") from None
    if 8 + n + end > size:
        raise ModelRefError(f"{file} is truncated: {size} bytes, but its header describes "
                            f"{8 + n + end}; an interrupted copy, download or save? copy it "
                            f"again")


def has_tokenizer(folder: Path) -> bool:
    return any((folder / n).is_file() for n in TOKENIZER_FILES)


def gguf_problem(file: Path) -> str:
    """Why a GGUF file cannot be read ('' when it can): a wrong magic, or a file cut short."""
    with open(file, "rb") as fh:
        if fh.read(4) != b"GGUF":
            return "it does not start with the GGUF magic bytes"
    try:
        from gguf import GGUFReader

        GGUFReader(str(file))
    except ImportError:
        return ""
    except (ValueError, IndexError, OSError) as e:  # the reader's errors for a file cut short
        return f"it is incomplete or damaged ({type(e).__name__}: {e})"
    return ""
