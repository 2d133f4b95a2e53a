"""What differs between the transformers releases the project's range allows (5.x)."""

from __future__ import annotations

import functools
import inspect


@functools.cache
def _cache_keyword(cls: type) -> str:
    params = inspect.signature(cls.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def with_cache(model, cache) -> dict:
    """``{keyword: cache}`` for ``model(...)``: a model's forward takes its KV cache as ``cache``
    in recent transformers 5.x, where ``past_key_values`` still works but warns and goes away in
    5.40, and only as ``past_key_values`` in earlier 5.x releases. Read from the forward's
    signature (of the wrapped model for a peft one), once per class."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {_cache_keyword(type(inner)): cache}
