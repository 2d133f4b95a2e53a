"""Iteration-level scheduling for continuous batching. No torch: lists, counts and ids only.

One engine step is ``schedule()`` -> the runner computes one token for every scheduled
sequence -> ``update()``. Between two steps finished sequences leave the batch and waiting ones
join it, so a short request never waits for a long one to finish (Orca, Yu et al. 2022).

Memory is a KV budget counted in blocks of ``block_size`` tokens (the vLLM accounting): a
sequence holding N tokens (prompt + generated) owns ceil(N / block_size) blocks. Admission is
first come, first served while the running batch has room (``max_batch_size``), the step's
prefill has room (``max_prefill_tokens``) and free blocks cover the prompt. When a running
sequence needs one more block and none is free, the most recently admitted sequence is
preempted: its blocks are freed and it goes back to the front of the queue, to be prefilled
again later with everything it had generated (recompute preemption). A request that could not
fit even alone is refused when it arrives, so the oldest running sequence always progresses.

The queue is bounded (``max_waiting``): beyond it ``add`` raises ``QueueFull`` and the HTTP
layer answers 429 - the server never grows an unbounded backlog.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

WAITING, RUNNING, FINISHED = "waiting", "running", "finished"


class QueueFull(Exception):
    """The waiting queue is at ``max_waiting``; try again later."""


class RequestTooLarge(Exception):
    """The request can never fit (context length or KV budget); the message says why."""


@dataclass
class SchedulerConfig:
    max_batch_size: int = 16  # sequences decoding together
    max_waiting: int = 64  # queued sequences before add() refuses
    kv_budget_tokens: int = 16384  # KV cache positions shared by all running sequences
    block_size: int = 16  # accounting granularity of the KV budget
    max_prefill_tokens: int = 2048  # prompt tokens prefilled in one step (>= 1 sequence)
    max_model_len: int = 2048  # prompt + generated tokens of one sequence

    @property
    def num_blocks(self) -> int:
        return self.kv_budget_tokens // self.block_size


@dataclass(eq=False)  # identity: two sequences are never "equal"
class Sequence:
    """One completion being generated. ``data`` is the runner's (sampling state); the
    scheduler never looks inside it."""

    seq_id: str
    prompt_ids: list[int]
    max_tokens: int
    data: Any = None
    output_ids: list[int] = field(default_factory=list)
    status: str = WAITING
    finish_reason: str | None = None
    arrival: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    finished_at: float | None = None
    preemptions: int = 0

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)

    @property
    def all_ids(self) -> list[int]:
        return self.prompt_ids + self.output_ids


@dataclass
class Batch:
    """What the runner does this step. ``prefill``: sequences without a KV cache (new, or
    preempted earlier): run all their tokens. ``decode``: feed each its last token.
    ``preempted``: drop their caches (they are waiting again)."""

    prefill: list[Sequence] = field(default_factory=list)
    decode: list[Sequence] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def sequences(self) -> list[Sequence]:
        return self.prefill + self.decode

    def __bool__(self) -> bool:
        return bool(self.prefill or self.decode)


class Scheduler:
    def __init__(self, cfg: SchedulerConfig):
        if cfg.num_blocks < 1 or cfg.max_batch_size < 1 or cfg.max_waiting < 0:
            raise ValueError(f"bad scheduler config {cfg}")
        self.cfg = cfg
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # admission order: the last one is preempted first
        self.blocks: dict[str, int] = {}  # seq_id -> blocks held
        self.free_blocks = cfg.num_blocks
        self.preemptions = 0

    # ------------------------------------------------------------------ requests

    def check(self, prompt_len: int, max_tokens: int) -> None:
        """Raise ``RequestTooLarge`` when such a request could never run."""
        total = prompt_len + max_tokens
        if total > self.cfg.max_model_len:
            raise RequestTooLarge(
                f"the prompt has {prompt_len} tokens; with max_tokens={max_tokens} that is "
                f"{total}, over this server's limit of {self.cfg.max_model_len} tokens")
        if self._blocks_for(total) > self.cfg.num_blocks:
            raise RequestTooLarge(
                f"prompt + max_tokens = {total} tokens exceeds the server's KV budget of "
                f"{self.cfg.kv_budget_tokens} tokens")

    def add(self, seqs: list[Sequence]) -> None:
        """Queue sequences (all or none: the n choices of one request arrive together)."""
        for s in seqs:
            self.check(len(s.prompt_ids), s.max_tokens)
        if len(self.waiting) + len(seqs) > self.cfg.max_waiting:
            raise QueueFull(f"{len(self.waiting)} requests are waiting (limit "
                            f"{self.cfg.max_waiting})")
        for s in seqs:
            s.status = WAITING
            self.waiting.append(s)

    def abort(self, seq_id: str) -> Sequence | None:
        """Finish a sequence now (client gone); frees its blocks. None if unknown/finished."""
        for s in list(self.waiting):
            if s.seq_id == seq_id:
                self.waiting.remove(s)
                return self._finish(s, "abort")
        for s in self.running:
            if s.seq_id == seq_id:
                self.running.remove(s)
                self._free(s)
                return self._finish(s, "abort")
        return None

    # ------------------------------------------------------------------ one step

    def schedule(self) -> Batch:
        batch = Batch()
        self._grow_running(batch)
        batch.decode = list(self.running)
        self._admit(batch)
        return batch

    def _grow_running(self, batch: Batch) -> None:
        """Give every running sequence the blocks its next token needs, preempting the
        newest ones when the budget runs out."""
        i = 0
        while i < len(self.running):
            s = self.running[i]
            need = self._blocks_for(s.num_tokens) - self.blocks[s.seq_id]
            if need <= self.free_blocks:
                self._take(s, need)
                i += 1
                continue
            victim = self.running.pop()  # the newest; may be ``s`` itself
            self._free(victim)
            victim.status, victim.preemptions = WAITING, victim.preemptions + 1
            self.preemptions += 1
            self.waiting.appendleft(victim)
            batch.preempted.append(victim)

    def _admit(self, batch: Batch) -> None:
        tokens = 0
        while self.waiting and len(self.running) < self.cfg.max_batch_size:
            s = self.waiting[0]
            need = self._blocks_for(s.num_tokens)
            if need > self.free_blocks:
                break
            if batch.prefill and tokens + s.num_tokens > self.cfg.max_prefill_tokens:
                break
            if s in batch.preempted:  # preempted this very step: wait for the next one
                break
            self.waiting.popleft()
            self.blocks[s.seq_id] = 0
            self._take(s, need)
            s.status = RUNNING
            self.running.append(s)
            batch.prefill.append(s)
            tokens += s.num_tokens

    def update(self, batch: Batch, tokens: dict[str, int],
               stopped: dict[str, str] | None = None) -> list[Sequence]:
        """Record each scheduled sequence's new token; ``stopped`` maps seq_id -> a finish
        reason the runner found (EOS, stop string). Returns the sequences finished now."""
        stopped = stopped or {}
        done = []
        now = time.monotonic()
        for s in batch.sequences:
            if s.status != RUNNING:  # aborted while the step ran
                continue
            s.output_ids.append(tokens[s.seq_id])
            if s.first_token_at is None:
                s.first_token_at = now
            why = stopped.get(s.seq_id)
            if why is None and len(s.output_ids) >= s.max_tokens:
                why = "length"
            if why is None and s.num_tokens >= self.cfg.max_model_len:
                why = "length"
            if why is not None:
                self.running.remove(s)
                self._free(s)
                done.append(self._finish(s, why))
        return done

    # ------------------------------------------------------------------ state

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def kv_usage(self) -> float:
        return 1.0 - self.free_blocks / self.cfg.num_blocks

    def _blocks_for(self, n_tokens: int) -> int:
        return -(-n_tokens // self.cfg.block_size)

    def _take(self, s: Sequence, n: int) -> None:
        self.blocks[s.seq_id] += n
        self.free_blocks -= n

    def _free(self, s: Sequence) -> None:
        self.free_blocks += self.blocks.pop(s.seq_id, 0)

    def _finish(self, s: Sequence, why: str) -> Sequence:
        s.status, s.finish_reason, s.finished_at = FINISHED, why, time.monotonic()
        return s
