"""Decoding: sampling transforms, the KV-cache loop, search strategies, speculative decoding.

Import from the submodules (``lmlab.infer.decode``, ``.sampling``, ``.search``,
``.speculative``); the names below are the public API, re-exported lazily so that
``import lmlab.infer`` stays cheap. (``decode`` is not re-exported: it is also a submodule name.)
"""

_EXPORTS = {
    "SamplingParams": "sampling", "sample": "sampling", "build_transforms": "sampling",
    "History": "sampling",
    "Completion": "decode", "Decoded": "decode", "Step": "decode", "TextDelta": "decode",
    "generate": "decode", "stream": "decode", "stream_tokens": "decode",
    "left_pad": "decode",
    "beam_search": "search", "contrastive_search": "search", "best_of_n": "search",
    "generate_beam": "search", "generate_contrastive": "search", "Hypothesis": "search",
    "BestOfN": "search",
    "speculative_decode": "speculative", "generate_speculative": "speculative",
    "DraftModel": "speculative", "PromptLookup": "speculative", "SpecStats": "speculative",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"lmlab.infer.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'lmlab.infer' has no attribute {name!r}")
