"""Model references, loading, the GGUF cache and tiny test models."""

from lmlab.models.load import base_reference, load_model, load_tokenizer, resolve, write_meta
from lmlab.models.registry import ALIASES, DEFAULT_MODEL

__all__ = ["ALIASES", "DEFAULT_MODEL", "base_reference", "load_model", "load_tokenizer",
           "resolve", "write_meta"]
