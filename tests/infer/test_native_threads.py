"""The C decode step gives the same logits, bit for bit, at any thread count (1, 2, 3), at each
weight precision, for one row (the greedy run in C) and for three rows: each weight row's
product is the same arithmetic whoever computes it, so how native.c splits rows between
threads (q/k/v as one run; gate and up each split, with the SiLU over each thread's rows or
chunk; every thread norming its own copy of the input; rows handed out in chunks that a thread
done early takes from the others) must not show in the results. Odd sizes (an MLP of 100, a
vocabulary of 1001) leave uneven shares and a short last SiLU chunk."""

import pytest
import torch

from lmlab.infer import native
from lmlab.infer.decode import left_pad, stream_tokens
from lmlab.infer.packed import can_pack
from lmlab.infer.sampling import SamplingParams

from ..tiny import odd_llama

pytestmark = [
    pytest.mark.skipif(not can_pack(torch.zeros(2, 2)), reason="this torch build has no oneDNN"),
    pytest.mark.skipif(not native.available(), reason=f"no native step: {native.why_not()}"),
]


@pytest.fixture(autouse=True)
def _fixed_threads(monkeypatch):
    """Each run at the count it asks for (no choice from timings: lmlab.infer.threads)."""
    monkeypatch.setenv("LMLAB_ADAPT_THREADS", "0")


@pytest.fixture(scope="module")
def odd_model():
    return odd_llama(1001, 100, hidden=96, positions=64, seed=0)


def _logits(model, rows: list[list[int]], weights: str, threads: int) -> torch.Tensor:
    """Every decode step's logits of greedy decoding (12 tokens) at ``threads`` threads."""
    ids, mask = left_pad(rows, 0)
    p = SamplingParams(temperature=0, max_new_tokens=12, ignore_eos=True)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        steps = list(stream_tokens(model, ids, mask, p, pack=weights, burst=8))
    finally:
        torch.set_num_threads(before)
    return torch.cat([s.logits for s in steps[1:]])  # (the first from the prefill: torch)


@pytest.mark.parametrize("weights", ["fp32", "bf16", "int8"])
def test_the_step_is_the_same_at_any_thread_count(odd_model, weights, monkeypatch):
    monkeypatch.setattr(native, "MAX_ROWS", 64)
    g = torch.Generator().manual_seed(3)
    one = [torch.randint(0, 1001, (9,), generator=g).tolist()]
    three = one + [torch.randint(0, 1001, (n,), generator=g).tolist() for n in (5, 11)]
    for rows in (one, three):
        ref = _logits(odd_model, rows, weights, 1)
        assert ref.shape[0] == 11 * len(rows) and ref.abs().max() > 0
        for nt in (2, 3):
            got = _logits(odd_model, rows, weights, nt)
            assert torch.equal(got, ref), (weights, len(rows), nt,
                                           float((got - ref).abs().max()))


@pytest.mark.parametrize("weights", ["fp32", "bf16", "int8"])
def test_rows_taken_by_another_thread_give_the_same_logits(odd_model, weights, monkeypatch):
    """Thread 0 held back 300 us at each product: the other thread takes its rows (counted),
    and the logits are still those of one thread, bit for bit: one row, three and five (the
    prefills of 30 and 50 inputs through C: bf16 runs them on AMX tiles, where there are any,
    in 2 and 4 groups of inputs, which must meet between them)."""
    monkeypatch.setattr(native, "MAX_ROWS", 64)
    g = torch.Generator().manual_seed(4)
    rows = [torch.randint(0, 1001, (n,), generator=g).tolist() for n in (7, 4, 10, 6, 9)]
    for batch in ([rows[0]], rows[:3], rows):
        ref = _logits(odd_model, batch, weights, 1)
        before = native.steal_test(300)
        try:
            got = _logits(odd_model, batch, weights, 2)
        finally:
            stolen = native.steal_test(0) - before
        assert stolen > 0, "no rows changed threads: the test did not test stealing"
        assert torch.equal(got, ref), (weights, len(batch), float((got - ref).abs().max()))


def test_greedy_runs_time_themselves_for_the_thread_choice(odd_model, monkeypatch):
    """With LMLAB_ADAPT_THREADS unset, each greedy run records its count and seconds a
    token, and runs at the count the choice picks (one thread here: the same logits)."""
    from lmlab.infer import threads

    monkeypatch.delenv("LMLAB_ADAPT_THREADS")
    seen = []
    monkeypatch.setattr(threads.ThreadChoice, "record", lambda self, nt, s: seen.append((nt, s)))
    monkeypatch.setattr(threads.ThreadChoice, "pick", lambda self: 1)
    g = torch.Generator().manual_seed(5)
    row = [torch.randint(0, 1001, (6,), generator=g).tolist()]
    got = _logits(odd_model, row, "fp32", 2)
    monkeypatch.setenv("LMLAB_ADAPT_THREADS", "0")
    assert torch.equal(got, _logits(odd_model, row, "fp32", 2))
    assert seen and all(nt == 1 and s > 0 for nt, s in seen)


def test_batched_steps_time_themselves_for_the_thread_choice(odd_model, monkeypatch):
    """With LMLAB_ADAPT_THREADS unset, each batched C step records its count and seconds in
    its shape class's pooled choice, and runs at the count picked (one thread: the same
    logits as at 2 fixed threads)."""
    from lmlab.infer import threads

    monkeypatch.delenv("LMLAB_ADAPT_THREADS")
    seen = []
    monkeypatch.setattr(threads.Pooled, "record", lambda self, nt, s: seen.append((nt, s)))
    monkeypatch.setattr(threads.Pooled, "pick", lambda self: 1)
    g = torch.Generator().manual_seed(6)
    rows = [torch.randint(0, 1001, (n,), generator=g).tolist() for n in (6, 4, 8)]
    got = _logits(odd_model, rows, "bf16", 2)
    monkeypatch.setenv("LMLAB_ADAPT_THREADS", "0")
    assert torch.equal(got, _logits(odd_model, rows, "bf16", 2))
    assert len(seen) >= 11 and all(nt == 1 and s > 0 for nt, s in seen)  # a step a token
