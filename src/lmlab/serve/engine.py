"""The engine: a background thread running ``schedule() -> runner.execute() -> update()``.

The HTTP layer talks only to this: ``submit`` (from the asyncio thread) queues a request's n
sequences and returns a ``Request`` whose ``events()`` is an async iterator of ``Delta``s;
``abort`` cancels it (client disconnect). The scheduler is guarded by one lock, held only for
its bookkeeping, never during a model step; cancellations are applied by the engine thread
between steps, so the runner is only ever touched by that thread.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field

from lmlab.infer.decode import completion_text
from lmlab.infer.sampling import SamplingParams
from lmlab.serve.metrics import ServeMetrics
from lmlab.serve.scheduler import Scheduler, SchedulerConfig, Sequence

log = logging.getLogger("lmlab.serve")
_ids = itertools.count()


@dataclass
class Delta:
    """New output of choice ``index``: text (may be empty), the token ids behind it, their
    logprobs [(token text, logprob, [(alt text, logprob)])] when asked, and on the last delta
    of the choice its ``finish_reason`` ("stop" | "length" | "abort" | "error")."""

    index: int
    text: str
    token_ids: list[int]
    logprobs: list | None = None
    finish_reason: str | None = None


@dataclass
class Request:
    request_id: str
    prompt_tokens: int
    n: int
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    seq_ids: list[str] = field(default_factory=list)
    completion_tokens: int = 0
    arrival: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    open_choices: int = 0

    def push(self, item) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the client's event loop is gone
            pass

    async def events(self):
        """Deltas until every choice has finished."""
        while True:
            item = await self.queue.get()
            if item is None:
                return
            yield item


class _Choice:
    """Incremental detokenization of one sequence: text that might still turn into a stop
    string, or is half of a multi-byte character, is held back until it is resolved."""

    def __init__(self, req: Request, index: int, tokenizer, stops):
        self.req, self.index, self.tok, self.stops = req, index, tokenizer, stops
        self.hold = max((len(s) for s in stops.stops), default=1) - 1
        self.sent, self.pending = 0, []
        self.pending_lps: list = []

    def feed(self, seq: Sequence, lp) -> Delta | None:
        tok = seq.output_ids[-1]
        self.pending.append(tok)
        if lp is not None:
            self.pending_lps.append(self._lp(tok, lp))
        if seq.finish_reason is None:
            text = self.tok.decode(seq.output_ids)
            end = len(text) - self.hold
            if text.endswith("\ufffd"):
                end = min(end, len(text) - 1)
            if end <= self.sent:
                return None
            piece, self.sent = text[self.sent:end], end
            return self._delta(piece, None)
        text = completion_text(self.tok, seq.output_ids, seq.finish_reason, self.stops)
        why = {"eos": "stop", "stop": "stop"}.get(seq.finish_reason, seq.finish_reason)
        return self._delta(text[self.sent:], why)

    def _lp(self, tok: int, lp) -> tuple:
        chosen, top = lp
        return (self.tok.decode([tok]), chosen, [(self.tok.decode([t]), v) for t, v in top])

    def _delta(self, text: str, why: str | None) -> Delta:
        d = Delta(self.index, text, self.pending, self.pending_lps or None, why)
        self.pending, self.pending_lps = [], []
        return d


class Engine:
    def __init__(self, runner, tokenizer, cfg: SchedulerConfig):
        self.runner, self.tokenizer = runner, tokenizer
        self.sched = Scheduler(cfg)
        self.cfg = cfg
        self.max_model_len = cfg.max_model_len
        self.metrics = ServeMetrics()
        self.metrics.gauge("lmlab_waiting_requests", "Sequences in the queue",
                           lambda: len(self.sched.waiting))
        self.metrics.gauge("lmlab_running_sequences", "Sequences in the running batch",
                           lambda: len(self.sched.running))
        self.metrics.gauge("lmlab_kv_usage_ratio", "Share of the KV budget in use",
                           self.sched.kv_usage)
        prefix = getattr(getattr(runner, "kv", None), "prefix", None)
        if prefix is not None:
            self.metrics.gauge("lmlab_prefix_cache_hit_tokens", "Prompt tokens whose KV came "
                               "from the prefix cache, since start", lambda: prefix.hit_tokens)
        self.cv = threading.Condition()
        self.choices: dict[str, _Choice] = {}
        self.aborts: set[str] = set()
        self.stopping = False
        self.steps = 0
        self.thread: threading.Thread | None = None
        # torch CPU threads for the engine thread (0 = leave as is). `lmlab serve` keeps the
        # main thread at 1 and gives the engine the rest: with GNU OpenMP, a second thread's
        # parallel regions ran ~40% slower here once the main thread had its own 2-thread team
        # (one SmolLM2-135M decode step at batch 1: 93 vs 67 ms; measured 2026-11-23).
        self.threads = 0

    # ------------------------------------------------------------------ HTTP side

    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, name="lmlab-engine", daemon=True)
        self.thread.start()

    def shutdown(self) -> None:
        with self.cv:
            self.stopping = True
            self.cv.notify()
        if self.thread is not None:
            self.thread.join(timeout=30)

    def check(self, prompt_len: int, max_tokens: int) -> None:
        self.sched.check(prompt_len, max_tokens)

    def submit(self, prompt_ids: list[int], params: list[SamplingParams],
               top_logprobs: int = 0) -> Request:
        """Queue one sequence per entry of ``params`` (the n choices). Raises
        ``QueueFull`` / ``RequestTooLarge`` (nothing is queued then). Call from the event
        loop that will read ``events()``."""
        req = Request(f"req-{next(_ids)}", len(prompt_ids), len(params),
                      asyncio.get_running_loop())
        seqs = []
        for i, p in enumerate(params):
            state = self.runner.new_state(p, top_logprobs)
            seqs.append(Sequence(f"{req.request_id}-{i}", list(prompt_ids), p.max_new_tokens,
                                 state))
        with self.cv:
            self.sched.add(seqs)
            for i, s in enumerate(seqs):
                self.choices[s.seq_id] = _Choice(req, i, self.tokenizer, s.data.stops)
                req.seq_ids.append(s.seq_id)
            req.open_choices = len(seqs)
            self.cv.notify()
        self.metrics.add("lmlab_prompt_tokens_total", len(prompt_ids) * len(params))
        return req

    def abort(self, req: Request) -> None:
        with self.cv:
            self.aborts.update(s for s in req.seq_ids if s in self.choices)
            self.cv.notify()

    # ------------------------------------------------------------------ engine thread

    def _loop(self) -> None:
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        while True:
            with self.cv:
                while not (self.stopping or self.sched.has_work or self.aborts):
                    self.cv.wait()
                if self.stopping:
                    break
                finished = self._apply_aborts()
                batch = self.sched.schedule()
            self._emit_finished(finished)
            if batch:
                self._step(batch)
        with self.cv:  # shutting down: end every open request
            self.aborts.update(self.choices)
            self._emit_finished(self._apply_aborts())

    def _apply_aborts(self) -> list[Sequence]:
        out = []
        for sid in self.aborts:
            s = self.sched.abort(sid)
            if s is not None:
                self.runner.release(s)
                out.append(s)
        self.aborts.clear()
        return out

    def _step(self, batch) -> None:
        try:
            out = self.runner.execute(batch)
        except Exception:  # a bad step must not kill the server: fail these sequences
            log.exception("engine step failed")
            with self.cv:
                failed = [self.sched.abort(s.seq_id) for s in batch.sequences]
            for s in failed:
                if s is not None:
                    self.runner.release(s)
                    s.finish_reason = "error"
            self._emit_finished([s for s in failed if s is not None])
            return
        with self.cv:
            done = self.sched.update(batch, out.tokens, out.stopped)
        for s in done:
            self.runner.release(s)
        self.steps += 1
        self.metrics.tokens(len(out.tokens))
        if batch.preempted:
            self.metrics.add("lmlab_preemptions_total", len(batch.preempted))
        for s in batch.sequences:
            if s.seq_id in out.tokens and s.seq_id in self.choices:
                c = self.choices[s.seq_id]
                c.req.completion_tokens += 1
                if c.req.first_token_at is None:
                    c.req.first_token_at = time.monotonic()
                self._emit(s, c.feed(s, out.logprobs.get(s.seq_id)))

    def _emit_finished(self, seqs: list[Sequence]) -> None:
        for s in seqs:
            if s.seq_id in self.choices:
                c = self.choices[s.seq_id]
                self._emit(s, Delta(c.index, "", [], None, s.finish_reason))

    def _emit(self, s: Sequence, delta: Delta | None) -> None:
        req = self.choices[s.seq_id].req
        if delta is not None:
            req.push(delta)
        if s.finish_reason is None:
            return
        del self.choices[s.seq_id]
        req.open_choices -= 1
        if req.open_choices == 0:
            now = time.monotonic()
            ttft = None if req.first_token_at is None else req.first_token_at - req.arrival
            status = s.finish_reason if s.finish_reason in ("abort", "error") else "ok"
            self.metrics.request_done(status, ttft, now - req.arrival)
            req.push(None)
