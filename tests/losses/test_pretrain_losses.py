"""The pretraining paradigms' corruptions and losses, by hand on 2-token examples."""

import math

import pytest
import torch

from lmlab.losses import pretrain as L

IGN = L.IGNORE
LN2 = math.log(2)


def test_token_loss_by_hand():
    # position 0: softmax([0, ln 3]) = [1/4, 3/4], label 1 -> ln(4/3)
    # position 1: softmax([ln 2, 0]) = [2/3, 1/3], label 0 -> ln(3/2); sum = ln 2
    logits = torch.tensor([[[0.0, math.log(3)], [math.log(2), 0.0]]])
    loss, n = L.token_loss(logits, torch.tensor([[1, 0]]))
    assert n == 2 and loss.item() == pytest.approx(LN2, abs=1e-6)
    loss, n = L.token_loss(logits, torch.tensor([[1, IGN]]))
    assert n == 1 and loss.item() == pytest.approx(math.log(4 / 3), abs=1e-6)


def test_clm_batch_is_shifted_views():
    w = torch.tensor([[4, 5, 6]])
    b = L.clm_batch(w)
    assert b["input_ids"].tolist() == [[4, 5]] and b["labels"].tolist() == [[5, 6]]
    assert b["input_ids"].data_ptr() == w.data_ptr()  # no copy


def test_mlm_corrupt_from_by_hand():
    ids, special = torch.tensor([[5, 7]]), torch.tensor([0])
    kw = {"mask_id": 3, "special": special, "p": 0.15}
    rand = torch.tensor([[9, 9]])
    # token 0 chosen (0.1 < 0.15), token 1 not; u_action decides mask / random / keep
    for action, expect in ((0.5, 3), (0.85, 9), (0.95, 5)):
        inputs, labels = L.mlm_corrupt_from(ids, torch.tensor([[0.1, 0.5]]),
                                            torch.tensor([[action, action]]), rand, **kw)
        assert inputs.tolist() == [[expect, 7]] and labels.tolist() == [[5, IGN]]
    # nothing under p: the lowest draw is chosen, so every row trains
    inputs, labels = L.mlm_corrupt_from(ids, torch.tensor([[0.6, 0.3]]),
                                        torch.tensor([[0.5, 0.5]]), rand, **kw)
    assert inputs.tolist() == [[5, 3]] and labels.tolist() == [[IGN, 7]]
    # a special token is never chosen, even with the lowest draw
    inputs, labels = L.mlm_corrupt_from(torch.tensor([[0, 7]]), torch.tensor([[0.01, 0.5]]),
                                        torch.tensor([[0.5, 0.5]]), rand, **kw)
    assert labels.tolist() == [[IGN, 7]] and inputs.tolist() == [[0, 3]]
    # the loss is the cross-entropy at the chosen token only: uniform over 2 -> ln 2
    loss, n = L.token_loss(torch.zeros(1, 2, 2), torch.tensor([[1, IGN]]))
    assert n == 1 and loss.item() == pytest.approx(LN2, abs=1e-6)


def test_mlm_corrupt_is_seeded_and_80_10_10():
    ids = torch.randint(1, 50, (200, 500), generator=torch.Generator().manual_seed(0))
    kw = {"mask_id": 0, "vocab": 50, "special": torch.tensor([0]), "p": 0.15}
    a = L.mlm_corrupt(ids, torch.Generator().manual_seed(1), **kw)
    b = L.mlm_corrupt(ids, torch.Generator().manual_seed(1), **kw)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    inputs, labels = a
    chosen = labels != IGN
    n = int(chosen.sum())  # ~15 000 of 100 000
    assert abs(n / ids.numel() - 0.15) < 0.01
    masked = int((inputs[chosen] == 0).sum()) / n
    kept = int((inputs[chosen] == ids[chosen]).sum()) / n  # includes random draws = original
    assert abs(masked - 0.8) < 0.02 and abs(kept - (0.1 + 0.1 / 50)) < 0.02
    assert torch.equal(inputs[~chosen], ids[~chosen])


def test_span_corrupt_from_by_hand():
    # 2 tokens: keep [10], noise [11] -> 10 <s0> | <s0> 11; shifted by one
    inputs, labels = L.span_corrupt_from([10, 11], [1], [1], [90])
    assert inputs == [10, 90, 90] and labels == [IGN, 90, 11]
    assert L.span_counts(2) == (1, 1)
    # 6 tokens, two spans
    inputs, labels = L.span_corrupt_from([1, 2, 3, 4, 5, 6], [1, 2], [2, 1], [90, 91])
    assert inputs + [6] == [1, 2, 90, 4, 91, 90, 3, 91, 5, 6]
    assert labels == [IGN] * 4 + [90, 3, 91, 5, 6]


def test_span_corrupt_shapes_and_seed():
    ids = torch.arange(1, 65).repeat(3, 1)
    noise, spans = L.span_counts(64)
    assert (noise, spans) == (10, 3)
    a = L.span_corrupt(ids, torch.Generator().manual_seed(0), sentinels=[100, 101, 102])
    b = L.span_corrupt(ids, torch.Generator().manual_seed(0), sentinels=[100, 101, 102])
    assert a[0].shape == (3, 64 + 2 * spans - 1) and torch.equal(a[0], b[0])
    assert int((a[1] != IGN).sum()) == 3 * (noise + spans)
    assert L.span_source_length(70) + 2 * L.span_counts(L.span_source_length(70))[1] - 1 <= 70


def test_prefix_lm_mask_and_labels_by_hand():
    # T = 2, prefix 1: the plain causal mask; every label kept
    m = L.prefix_lm_mask(torch.tensor([1]), 2)
    assert m.shape == (1, 1, 2, 2) and m[0, 0].tolist() == [[True, False], [True, True]]
    assert L.prefix_lm_labels(torch.tensor([[5, 6]]), torch.tensor([1])).tolist() == [[5, 6]]
    # T = 3, prefix 2: tokens 0 and 1 see each other; position 0 would see its label -> ignored
    m = L.prefix_lm_mask(torch.tensor([2]), 3)[0, 0].tolist()
    assert m == [[True, True, False], [True, True, False], [True, True, True]]
    labels = L.prefix_lm_labels(torch.tensor([[5, 6, 7]]), torch.tensor([2]))
    assert labels.tolist() == [[IGN, 6, 7]]


def test_electra_replace_and_loss_by_hand():
    inputs, labels = torch.tensor([[3, 7]]), torch.tensor([[5, IGN]])  # token 0 was masked
    corrupted, replaced = L.electra_replace(inputs, labels, torch.tensor([[5, 8]]))
    assert corrupted.tolist() == [[5, 7]] and replaced.tolist() == [[False, False]]
    corrupted, replaced = L.electra_replace(inputs, labels, torch.tensor([[6, 8]]))
    assert corrupted.tolist() == [[6, 7]] and replaced.tolist() == [[True, False]]
    # generator: uniform over 2 at the masked token -> ln 2 (mean over 1 masked token)
    # discriminator: logit 0 for a replaced token -> ln 2; logit ln 3 for an original one ->
    # -ln(1 - 3/4) = ln 4; mean (ln 2 + ln 4) / 2 = 1.5 ln 2
    disc = torch.tensor([[0.0, math.log(3)]])
    s, n = L.replaced_token_loss(disc, replaced)
    assert n == 2 and s.item() == pytest.approx(3 * LN2, abs=1e-6)
    gen_labels = torch.tensor([[1, IGN]])  # the masked token's id in a 2-token vocabulary
    total, m, parts = L.electra_loss(torch.zeros(1, 2, 2), gen_labels, disc, replaced,
                                     weight=50.0)
    assert m == 1 and total.item() / m == pytest.approx(LN2 + 50 * 1.5 * LN2, abs=1e-5)
    # logit 0 says "original" for the replaced token, ln 3 "replaced" for the original: 0 / 2
    assert parts["disc_accuracy"] == 0.0
    _, _, parts = L.electra_loss(torch.zeros(1, 2, 2), gen_labels, -disc + 1, replaced)
    assert parts["disc_accuracy"] == pytest.approx(1.0)  # logits 1, 1 - ln 3: both right
