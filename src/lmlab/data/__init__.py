"""Data: row formats and validation, sources, chat templates and loss masks, packing, collate.

The path of a row: ``load_rows`` (file / HF dataset / task -> validated rows) ->
``encode_rows`` (rows -> input_ids + labels) -> optional ``pack`` -> ``collate`` (tensors).
See docs/data.md.
"""

from lmlab.data.chat import (SequenceTooLong, encode_chat, encode_preference, encode_prompt,
                             encode_rows, encode_text)
from lmlab.data.collate import collate, count_trained_tokens
from lmlab.data.formats import KINDS, normalize_row
from lmlab.data.packing import pack, pad_waste
from lmlab.data.sources import load_rows

__all__ = ["KINDS", "SequenceTooLong", "collate", "count_trained_tokens", "encode_chat",
           "encode_preference", "encode_prompt", "encode_rows", "encode_text", "load_rows",
           "normalize_row", "pack", "pad_waste"]
