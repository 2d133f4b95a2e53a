"""Packing and collate: layout, label boundaries, pad waste, and no cross-example attention."""

import pytest
import torch

from lmlab.data import SequenceTooLong, collate, pack, pad_waste
from lmlab.data.chat import IGNORE
from lmlab.data.collate import count_trained_tokens


def make_examples(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(3, 5000, (n,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [IGNORE] * (n // 2) + ids[n // 2:]})
    return out


def test_pack_layout():
    examples = make_examples([5, 9, 3, 7, 12, 4, 1])
    rows = pack(examples, 16)
    assert all(len(r["input_ids"]) <= 16 for r in rows)
    assert sorted(n for r in rows for n in r["seq_lens"]) == [1, 3, 4, 5, 7, 9, 12]
    for r in rows:
        n = sum(r["seq_lens"])
        assert len(r["input_ids"]) == len(r["labels"]) == len(r["position_ids"]) == n
        assert r["position_ids"] == [p for n in r["seq_lens"] for p in range(n)]
    # every example's tokens appear exactly once, contiguously
    chunks = sorted(tuple(r["input_ids"][s - n:s]) for r in rows
                    for n, s in zip(r["seq_lens"], _ends(r["seq_lens"])))
    assert chunks == sorted(tuple(e["input_ids"]) for e in examples)


def _ends(seq_lens):
    total, out = 0, []
    for n in seq_lens:
        total += n
        out.append(total)
    return out


def test_pack_uses_few_rows():
    # 5+5 and 3+3+2+2 fill two rows of 10 exactly; first-fit in this order would need three
    # (2+2+5, 5+3, 3).
    rows = pack(make_examples([2, 2, 5, 5, 3, 3]), 10)
    assert len(rows) == 2 and sorted(len(r["input_ids"]) for r in rows) == [10, 10]


def test_no_label_predicts_across_examples():
    examples = [{"input_ids": [10, 11, 12], "labels": [10, 11, 12]},
                {"input_ids": [20, 21], "labels": [20, 21]}]
    (row,) = pack(examples, 8)
    assert row["labels"] == [IGNORE, 11, 12, IGNORE, 21]
    # ... and the trained-token count (after the loss's shift) is the same as unpacked
    packed, unpacked = collate([row], 0), collate(examples, 0)
    assert count_trained_tokens(packed) == count_trained_tokens(unpacked) == 3


def test_pack_refuses_too_long():
    with pytest.raises(SequenceTooLong, match="example 1"):
        pack(make_examples([3, 20]), 16)


def test_pad_waste_by_hand():
    examples = make_examples([2, 4, 6, 6])
    # batches [2,4] -> 8 slots, [6,6] -> 12 slots; 2 of 20 slots are padding
    assert pad_waste(examples, 2) == pytest.approx(2 / 20)
    # explicit batches [2,6] and [4,6]: 24 slots, 6 of them padding
    batches = [[examples[0], examples[2]], [examples[1], examples[3]]]
    assert pad_waste(batches, 2) == pytest.approx(6 / 24)
    # packed into rows of 6: [6], [6], [4, 2] -> no padding at all
    assert pad_waste(examples, 2, 6) == 0.0


def test_collate_pads_right():
    examples = [{"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]},
                {"input_ids": [8], "labels": [8]}]
    batch = collate(examples, pad_id=2)
    assert set(batch) == {"input_ids", "labels", "attention_mask"}
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 2, 2]]
    assert batch["labels"].tolist() == [[IGNORE, 6, 7], [8, IGNORE, IGNORE]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert all(t.dtype == torch.long for t in batch.values())
    assert count_trained_tokens(batch) == 2
    assert collate(examples, 2, pad_to_multiple_of=8)["input_ids"].shape == (2, 8)


def test_collate_packed_rows_have_positions_and_no_mask():
    rows = pack(make_examples([4, 3, 2]), 7)  # rows of 7 and 2 tokens
    batch = collate(rows, pad_id=2)
    assert set(batch) == {"input_ids", "labels", "position_ids"}
    assert batch["input_ids"].shape == (2, 7)
    # the padding of the short row is its own block of positions, so nothing attends to it
    assert batch["position_ids"][1].tolist() == [0, 1, 0, 1, 2, 3, 4]
    assert batch["labels"][1, 2:].eq(IGNORE).all()


@torch.no_grad()
def test_packed_logits_equal_separate(tiny_model):
    """No cross-example attention: each packed example's logits equal running it alone."""
    tiny_model.eval()
    examples = make_examples([5, 9, 3, 7, 12, 4, 6])
    rows = pack(examples, 16)
    batch = collate(rows, pad_id=2)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = tiny_model(**inputs, use_cache=False).logits  # (B, T, V)
    checked = 0
    for b, row in enumerate(rows):
        for n, end in zip(row["seq_lens"], _ends(row["seq_lens"])):
            alone = tiny_model(input_ids=torch.tensor([row["input_ids"][end - n:end]]),
                               use_cache=False).logits[0]  # (n, V)
            torch.testing.assert_close(logits[b, end - n:end], alone, atol=1e-5, rtol=0)
            checked += 1
    assert checked == len(examples) and len(rows) < len(examples)


@torch.no_grad()
def test_packing_needs_use_cache_false(tiny_model):
    """transformers builds the packed mask only without a KV cache; with the config default
    (use_cache=True) the examples attend to each other. Documents why callers pass
    use_cache=False; if this starts failing, transformers changed and docs/data.md should too."""
    tiny_model.eval()
    (row,) = pack(make_examples([6, 6]), 12)
    inputs = {k: v for k, v in collate([row], 2).items() if k != "labels"}
    second_alone = tiny_model(input_ids=torch.tensor([row["input_ids"][6:]])).logits[0]
    leaky = tiny_model(**inputs).logits[0, 6:]
    assert not torch.allclose(leaky, second_alone, atol=1e-3)
