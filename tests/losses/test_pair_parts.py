"""Splitting a pair batch into its chosen and rejected halves changes nothing but padding."""

import pytest
import torch

from lmlab.losses.logprobs import collate_pairs, pair_parts, take_rows
from tests.tolerance import forward_terms, fp32_tol, sum_terms


def _examples(tok, short, long):
    from lmlab.data import encode_preference

    return [encode_preference(tok, {"prompt": f"Question {i}?", "chosen": short,
                                    "rejected": long}, 512) for i in range(3)]


def test_take_rows_cuts_columns_and_per_row_tensors():
    batch = {"input_ids": torch.tensor([[1, 2, 0], [3, 0, 0], [4, 5, 6], [7, 8, 0]]),
             "attention_mask": torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 0]]),
             "ref_logps": torch.tensor([1., 2., 3., 4.]), "scalar": 5}
    top = take_rows(batch, 0, 2)
    assert top["input_ids"].tolist() == [[1, 2], [3, 0]] and top["ref_logps"].tolist() == [1, 2]
    assert top["scalar"] == 5 and take_rows(batch, 2, 4)["input_ids"].shape == (2, 3)


def test_split_only_when_it_saves(tok):
    same = collate_pairs(_examples(tok, "Paris.", "Rome."), tok.pad_token_id)
    assert len(pair_parts(same)) == 1
    uneven = collate_pairs(_examples(tok, "Paris.", "Well, basically, " * 20 + "Paris."),
                           tok.pad_token_id)
    parts = pair_parts(uneven)
    assert len(parts) == 2 and parts[0]["input_ids"].shape[1] < uneven["input_ids"].shape[1]


@pytest.mark.parametrize("method", ["lora", "full"])
def test_split_objective_equals_one_forward(tok, method, monkeypatch):
    from lmlab.losses import logprobs as L
    from lmlab.losses.preference import PAIR_LOSSES, PrefParams
    from lmlab.models import load_model
    from lmlab.models.adapters import add_lora
    from lmlab.stages.dpo import PairObjective

    ex = _examples(tok, "Paris.", "Well, basically, " * 20 + "Paris.")
    model = load_model("tiny:llama")
    if method == "lora":
        model, ref = add_lora(model, r=4, alpha=8, dropout=0.0, targets=[]), L.adapter_reference
        for n, p in model.named_parameters():
            if "lora_B" in n:
                torch.nn.init.normal_(p, std=0.5, generator=torch.Generator().manual_seed(0))
    else:
        L.precompute(model, ex, lambda e: collate_pairs(e, tok.pad_token_id),
                     lambda chunk, batch, m: [e.update(ref_chosen=a, ref_rejected=b) for e, a, b
                                              in zip(chunk, *L.sequence_logps(m, batch)[0]
                                                     .chunk(2))])
        ref = L.cached_reference()
        with torch.no_grad():
            model.lm_head.weight.mul_(1.5)  # the policy moves away from the cached reference
    batch = collate_pairs(ex, tok.pad_token_id)
    obj = PairObjective(PAIR_LOSSES["dpo"], PrefParams(beta=0.1), ref)

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    split_loss, split_m = obj(model, batch)
    g_split = grads(split_loss)
    monkeypatch.setattr(L, "pair_parts", lambda b, min_saving=0.1: [b])
    one_loss, one_m = obj(model, batch)
    g_one = grads(one_loss)
    # Both sides run the same log-softmax over the same vocabulary, so its sums add in the same
    # order; they differ by the forward's roundings at another padding width, over all the
    # batch's tokens (one long sum of independent roundings), times beta in the loss and margin
    with torch.no_grad():
        scale = float(model(input_ids=batch["input_ids"],
                            attention_mask=batch["attention_mask"]).logits.abs().max())
    n = int(batch["attention_mask"].sum())
    tol = 0.1 * fp32_tol(sum_terms(n * forward_terms(model.config, batch["input_ids"].shape[1])),
                         scale)
    assert split_loss.item() == pytest.approx(one_loss.item(), rel=0, abs=tol)
    assert abs(split_m["rewards/margin"]) > 3 * tol
    assert split_m["rewards/margin"] == pytest.approx(one_m["rewards/margin"], rel=0, abs=tol)
    for a, b in zip(g_split, g_one):  # each gradient: the same sums, relative to its largest
        torch.testing.assert_close(a, b, rtol=0, atol=tol / 0.1 * float(b.abs().max()))


@pytest.fixture(scope="module")
def tok():
    from lmlab.models import load_tokenizer

    return load_tokenizer("tiny:llama")
