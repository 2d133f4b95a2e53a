"""Text coresets: the selection wrapper, the cover numbers and the embedded text, by hand."""

import re

import pytest
import torch

from lmlab.data.text_select import check_selection, cover, row_text, select_rows

# five points on a line: 0, 1, 2, 10, 11
LINE = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0]])


def test_kcenter_rows_by_hand_in_original_order():
    # mean 4.8 -> nearest is 2 (index 2); farthest from {2} is 11 (4); then from {2, 11}: 0
    idx, w = select_rows("kcenter", LINE, 0.6)
    assert idx.tolist() == [0, 2, 4] and w.tolist() == [1.0, 1.0, 1.0]


def test_facility_rows_by_hand_and_weights():
    # sim = 11 - |xi - xj|; the candidate sample (ceil(5/2 ln 100) = 12) covers all 5 rows.
    # Summed similarity per row: 31, 34, 35, 27, 24 -> row 2 first (best = 9, 10, 11, 3, 2).
    # Gains then: row 0: 2, row 1: 2, row 3: 8 + 8 = 16, row 4: 7 + 9 = 16 -> tie, row 3
    idx, w = select_rows("facility", LINE, 0.4)
    assert idx.tolist() == [2, 3]
    # 2 serves 0, 1, 2; 3 serves 3, 4 -> counts 3 and 2, mean 1 -> 1.2 and 0.8
    assert w.tolist() == pytest.approx([1.2, 0.8])


def test_random_rows_seeded_and_sized():
    a, _ = select_rows("random", LINE, 0.4, seed=1)
    assert len(a) == 2 and a.tolist() == sorted(a.tolist())
    assert select_rows("random", LINE, 0.4, seed=1)[0].tolist() == a.tolist()
    assert len(select_rows("random", LINE, 0.01)[0]) == 1  # at least one row
    assert select_rows("kcenter", LINE, 1.0)[0].tolist() == [0, 1, 2, 3, 4]


def test_cover_by_hand():
    c = cover(LINE, torch.tensor([0, 2, 4]))
    # distances 0, 1, 0, 1, 0
    assert c == {"radius": 1.0, "mean_distance": 0.4}


@pytest.mark.parametrize("method, fraction, says", [
    ("kmeans", 0.5, "unknown selection method 'kmeans'"),
    ("random", 0.0, "fraction must be in (0, 1], got 0.0"),
    ("random", 1.5, "fraction must be in (0, 1], got 1.5"),
])
def test_bad_selection_is_a_clear_error(method, fraction, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        check_selection(method, fraction)


def test_row_text_per_kind():
    assert row_text({"text": "abc"}) == "abc"
    assert row_text({"messages": [{"role": "user", "content": "hi"},
                                  {"role": "assistant", "content": "yo"}]}) == "hi\nyo"
    assert row_text({"prompt": "2+2?", "answer": "4"}) == "2+2?\n4"
    assert row_text({"prompt": [{"role": "user", "content": "q"}], "chosen": "a",
                     "rejected": "b"}) == "q"
