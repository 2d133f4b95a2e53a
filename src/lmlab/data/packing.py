"""Packing: several short tokenized examples per row, with no attention across them.

A packed row concatenates examples and carries ``position_ids`` that restart at 0 for each one.
transformers (>= 4.5x, checked in 5.23 ``masking_utils.find_packed_sequence_indices``) reads a
position that does not follow its predecessor as the start of a new sequence and builds a
block-diagonal causal mask - but only when no ``attention_mask`` and no KV cache are passed
(``use_cache=False``). ``collate`` therefore returns no mask for packed rows; the test
``test_packed_logits_equal_separate`` proves there is no cross-example attention.

The loss shifts labels (position t predicts label t+1), so the last token of one example would
predict the first token of the next; we set the first label of every example to -100. That label
is never trained in an unpacked row either, so packing leaves the trained-token count unchanged.
"""

from __future__ import annotations

import bisect

from lmlab.data.chat import IGNORE, SequenceTooLong


def _bins(lengths: list[int], seq_len: int) -> list[list[int]]:
    """Best-fit decreasing: example indices per row, each row's total length <= seq_len.

    Longest first, each into the fullest row it still fits (a greedy first-fit variant that
    leaves less room unused); ``free`` is kept sorted as (room left, row) for bisect, so packing
    is O(n log n) plus list inserts.
    """
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        n = lengths[i]
        if n > seq_len:
            raise SequenceTooLong(n, seq_len, where=f"example {i}: ")
        k = bisect.bisect_left(free, (n, -1))
        if k == len(free):
            rows.append([i])
            bisect.insort(free, (seq_len - n, len(rows) - 1))
        else:
            room, r = free.pop(k)
            rows[r].append(i)
            bisect.insort(free, (room - n, r))
    return rows


def _packed_row(examples: list[dict]) -> dict:
    input_ids, labels, position_ids, seq_lens = [], [], [], []
    for ex in examples:
        n = len(ex["input_ids"])
        input_ids += ex["input_ids"]
        # No position predicts across examples: the first label is never a target.
        labels += [IGNORE] + list(ex["labels"][1:])
        position_ids += range(n)
        seq_lens.append(n)
    return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids,
            "seq_lens": seq_lens}


def pack(examples: list[dict], seq_len: int) -> list[dict]:
    """Pack encoded examples (``input_ids``, ``labels``) into rows of at most ``seq_len`` tokens.

    Returns rows with ``input_ids``, ``labels``, ``position_ids`` (each (L,), L <= seq_len) and
    ``seq_lens`` (the example lengths, in order). Other keys of the examples are dropped.
    """
    bins = _bins([len(ex["input_ids"]) for ex in examples], seq_len)
    return [_packed_row([examples[i] for i in b]) for b in bins]


def _batches(items: list, batch_size: int) -> list[list]:
    return [items[i:i + batch_size] for i in range(0, len(items), batch_size)]


def pad_waste(examples_or_batches: list, batch_size: int, seq_len: int | None = None) -> float:
    """Fraction of the (B, T) slots that are padding when batches are padded to their longest.

    examples_or_batches: encoded examples (taken ``batch_size`` at a time, in order) or a list
    of batches (lists of examples). With ``seq_len`` the examples are packed first, so
    ``pad_waste(ex, b)`` vs ``pad_waste(ex, b, seq_len)`` compares padded with packed batching.
    """
    items = examples_or_batches
    if items and isinstance(items[0], list):
        batches = items
    else:
        batches = _batches(pack(items, seq_len) if seq_len else items, batch_size)
    slots = real = 0
    for batch in batches:
        lengths = [len(ex["input_ids"]) for ex in batch]
        slots += len(lengths) * max(lengths, default=0)
        real += sum(lengths)
    return 1.0 - real / slots if slots else 0.0
