"""QLoRA's frozen base: a model loaded through bitsandbytes as NF4 (4-bit) or LLM.int8()
(8-bit) weights, ready for ``models.adapters.add_lora``. bitsandbytes >= 0.49 runs both on CPU
(forward and the backward that LoRA needs); where it has no backend for the device, the error
says what to use instead.
"""

from __future__ import annotations

import tempfile

import torch

from lmlab.errors import UserError
from lmlab.quant.ptq import Recipe, load_bnb, require


def _folder(ref: str, tmp: str) -> str:
    """A transformers folder holding the fp32 weights of ``ref`` (written to ``tmp`` if needed)."""
    from lmlab.models import load_model, resolve
    from lmlab.models.load import model_folder
    from lmlab.models.registry import ALIASES

    r = resolve(ref)
    if r.kind == "alias":
        return str(model_folder(ALIASES[r.ref]))
    if r.kind == "folder":
        return r.path
    load_model(ref, merge_adapter=True).save_pretrained(tmp)
    return tmp


def backend_problem(device: torch.device) -> str | None:
    """Why bitsandbytes cannot train on ``device`` here, or None."""
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        return "the package bitsandbytes is not installed (pip install 'lmlab[quant]')"
    if device.type not in ("cpu", "cuda"):
        return f"bitsandbytes has no {device.type} backend; QLoRA needs a CUDA GPU or a CPU"
    return None


def load_qlora_base(ref: str, bits: int, device: torch.device):
    """The frozen quantized base for QLoRA (4 = NF4, 8 = LLM.int8())."""
    problem = backend_problem(device)
    if problem:
        raise UserError(f"method=qlora: {problem}")
    require("bitsandbytes")
    recipe = Recipe("nf4" if bits == 4 else "bnb-int8")
    with tempfile.TemporaryDirectory(prefix="lmlab-qlora-") as tmp:
        model = load_bnb(_folder(ref, tmp), recipe, device=str(device))
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def is_quantized_base(model) -> bool:
    return getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)



