"""The scheduler on hand-written scenarios with fake runner outputs (no model, no torch)."""

import subprocess
import sys

import pytest

from lmlab.serve.scheduler import FINISHED, RUNNING, WAITING, QueueFull, RequestTooLarge, \
    Scheduler, SchedulerConfig, Sequence


def seq(name, prompt_len=4, max_tokens=8):
    return Sequence(name, list(range(prompt_len)), max_tokens)


def step(sched, stop=()):
    """One engine step with a fake runner: every sequence emits token 7; ``stop`` names
    sequences whose token is an EOS."""
    batch = sched.schedule()
    done = sched.update(batch, {s.seq_id: 7 for s in batch.sequences},
                        {s: "eos" for s in stop})
    return batch, done


def names(seqs):
    return [s.seq_id for s in seqs]


def test_import_does_not_pull_torch():
    code = "import sys, lmlab.serve.scheduler; assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_admission_by_batch_size_then_join_between_steps():
    s = Scheduler(SchedulerConfig(max_batch_size=2, kv_budget_tokens=1024))
    s.add([seq("a"), seq("b"), seq("c")])
    b, _ = step(s)
    assert names(b.prefill) == ["a", "b"] and b.decode == []
    assert [x.status for x in (s.running + list(s.waiting))] == [RUNNING, RUNNING, WAITING]
    b, _ = step(s, stop=["a"])  # a finishes at its 2nd token...
    assert names(b.decode) == ["a", "b"] and b.prefill == []
    b, _ = step(s)  # ...and c joins the running batch at the very next step
    assert names(b.decode) == ["b"] and names(b.prefill) == ["c"]
    assert s.running[0].output_ids == [7, 7, 7] and s.running[1].output_ids == [7]


def test_max_tokens_finishes_with_length_and_frees_blocks():
    s = Scheduler(SchedulerConfig(kv_budget_tokens=64, block_size=4))
    s.add([seq("a", prompt_len=5, max_tokens=3)])
    b, done = step(s)
    assert s.blocks["a"] == 2 and s.free_blocks == 14  # 5 tokens -> 2 blocks of 4
    step(s)
    _, done = step(s)
    assert names(done) == ["a"] and done[0].finish_reason == "length"
    assert done[0].status == FINISHED and done[0].output_ids == [7, 7, 7]
    assert s.free_blocks == 16 and not s.has_work


def test_prefill_token_budget_spreads_admission_over_steps():
    s = Scheduler(SchedulerConfig(max_prefill_tokens=10, kv_budget_tokens=1024))
    s.add([seq("a", 6), seq("b", 6), seq("c", 3)])
    b, _ = step(s)
    assert names(b.prefill) == ["a"]  # 6 + 6 > 10; FCFS, so c does not jump the queue
    b, _ = step(s)
    assert names(b.prefill) == ["b", "c"] and names(b.decode) == ["a"]


def test_a_long_prompt_alone_exceeds_the_prefill_budget():
    s = Scheduler(SchedulerConfig(max_prefill_tokens=4, kv_budget_tokens=1024))
    s.add([seq("a", 20)])
    assert names(s.schedule().prefill) == ["a"]


def test_kv_budget_blocks_admission():
    s = Scheduler(SchedulerConfig(kv_budget_tokens=16, block_size=4))
    s.add([seq("a", 8, 2), seq("b", 12, 2)])
    b, _ = step(s)
    assert names(b.prefill) == ["a"] and s.free_blocks == 2  # b needs 3 blocks
    b, done = step(s)
    assert names(done) == ["a"] and b.prefill == []
    b, _ = step(s)
    assert names(b.prefill) == ["b"]


def test_preemption_when_kv_runs_out_and_resume_later():
    s = Scheduler(SchedulerConfig(kv_budget_tokens=16, block_size=4))
    s.add([seq("a", 8, 6), seq("b", 8, 6)])
    step(s)  # both hold 2 blocks, 9 tokens each after the step: each needs a 3rd block
    b, _ = step(s)
    # a (oldest) gets the block freed by preempting b, the newest
    assert names(b.preempted) == ["b"] and names(b.decode) == ["a"] and b.prefill == []
    victim = s.waiting[0]
    assert victim.seq_id == "b" and victim.status == WAITING and victim.preemptions == 1
    assert victim.output_ids == [7]  # what it generated is kept and re-prefilled later
    while s.running:
        b, done = step(s)
    assert names(done) == ["a"]
    b, _ = step(s)
    assert names(b.prefill) == ["b"] and b.prefill[0].num_tokens == 10  # 8 + 1 + the new one
    while s.has_work:
        step(s)
    assert victim.output_ids == [7] * 6 and victim.finish_reason == "length"
    assert s.free_blocks == 4 and s.preemptions == 1


def test_the_only_sequence_is_never_preempted_by_itself():
    s = Scheduler(SchedulerConfig(kv_budget_tokens=12, block_size=4))
    s.add([seq("a", 4, 8)])
    while s.has_work:
        b, done = step(s)
        assert not b.preempted
    assert done[0].output_ids == [7] * 8


def test_refuse_requests_that_can_never_fit():
    s = Scheduler(SchedulerConfig(kv_budget_tokens=32, block_size=4, max_model_len=100))
    with pytest.raises(RequestTooLarge, match="KV budget"):
        s.add([seq("a", 30, 8)])
    with pytest.raises(RequestTooLarge, match="limit of 100"):
        s.check(90, 20)
    assert not s.waiting


def test_bounded_queue_refuses_all_or_nothing():
    s = Scheduler(SchedulerConfig(max_waiting=3))
    s.add([seq("a"), seq("b")])
    with pytest.raises(QueueFull):
        s.add([seq("c"), seq("d")])  # n=2 choices of one request: both or neither
    assert names(s.waiting) == ["a", "b"]
    s.add([seq("c")])
    step(s)  # admitted sequences leave the queue: room again
    s.add([seq("d"), seq("e")])


def test_cancel_waiting_and_running_frees_everything():
    s = Scheduler(SchedulerConfig(max_batch_size=1, kv_budget_tokens=64, block_size=4))
    s.add([seq("a"), seq("b")])
    b = s.schedule()
    assert s.abort("b").finish_reason == "abort" and not s.waiting
    assert s.abort("a").status == FINISHED
    # the step that was running when a was aborted records nothing for it
    assert s.update(b, {"a": 7}) == [] and b.prefill[0].output_ids == []
    assert s.free_blocks == 16 and not s.has_work and s.abort("a") is None


def test_stop_reason_from_runner_and_model_length_limit():
    s = Scheduler(SchedulerConfig(max_model_len=6, kv_budget_tokens=64))
    s.add([seq("a", 4, 2), seq("b", 4, 2)])
    _, done = step(s, stop=["a"])
    assert [(x.seq_id, x.finish_reason) for x in done] == [("a", "eos")]
    _, done = step(s)
    assert [(x.seq_id, x.finish_reason) for x in done] == [("b", "length")]
