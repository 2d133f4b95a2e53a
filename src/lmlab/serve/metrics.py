"""Prometheus text exposition (format 0.0.4) for a handful of counters, gauges and histograms.

Small enough to own: no registry, no label sets beyond one optional label; ``render`` is what
``GET /metrics`` returns. Thread-safe (the engine thread observes, the HTTP thread renders).
"""

from __future__ import annotations

import threading
import time
from collections import deque

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)


class Histogram:
    def __init__(self, name: str, help: str, buckets=LATENCY_BUCKETS):
        self.name, self.help, self.buckets = name, help, tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.sum, self.count = 0.0, 0

    def observe(self, v: float) -> None:
        for i, b in enumerate(self.buckets):
            if v <= b:
                self.counts[i] += 1
        self.sum += v
        self.count += 1

    def lines(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        out += [f'{self.name}_bucket{{le="{b}"}} {c}' for b, c in zip(self.buckets, self.counts)]
        out += [f'{self.name}_bucket{{le="+Inf"}} {self.count}',
                f"{self.name}_sum {self.sum:.6f}", f"{self.name}_count {self.count}"]
        return out


class ServeMetrics:
    """What the engine reports; gauges are read from callables at render time."""

    def __init__(self, window_s: float = 10.0):
        self.lock = threading.Lock()
        self.ttft = Histogram("lmlab_time_to_first_token_seconds",
                              "Time from request arrival to its first generated token")
        self.latency = Histogram("lmlab_request_latency_seconds",
                                 "Time from request arrival to its last token")
        self.counters = {"lmlab_requests_total": {}, "lmlab_generated_tokens_total": 0,
                         "lmlab_prompt_tokens_total": 0, "lmlab_preemptions_total": 0}
        self.window = window_s
        self.recent: deque[tuple[float, int]] = deque()  # (time, tokens) of recent steps
        self.gauges: dict[str, tuple[str, object]] = {}

    def gauge(self, name: str, help: str, fn) -> None:
        self.gauges[name] = (help, fn)

    def request_done(self, status: str, ttft: float | None, latency: float | None) -> None:
        with self.lock:
            c = self.counters["lmlab_requests_total"]
            c[status] = c.get(status, 0) + 1
            if ttft is not None:
                self.ttft.observe(ttft)
            if latency is not None:
                self.latency.observe(latency)

    def add(self, name: str, n: int) -> None:
        with self.lock:
            self.counters[name] += n

    def tokens(self, n: int) -> None:
        now = time.monotonic()
        with self.lock:
            self.counters["lmlab_generated_tokens_total"] += n
            self.recent.append((now, n))
            self._trim(now)

    def tokens_per_second(self) -> float:
        now = time.monotonic()
        with self.lock:
            self._trim(now)
            return sum(n for _, n in self.recent) / self.window

    def _trim(self, now: float) -> None:
        while self.recent and self.recent[0][0] < now - self.window:
            self.recent.popleft()

    def render(self) -> str:
        tps = self.tokens_per_second()
        with self.lock:
            out = ["# HELP lmlab_requests_total Finished requests by status",
                   "# TYPE lmlab_requests_total counter"]
            out += [f'lmlab_requests_total{{status="{k}"}} {v}' for k, v in
                    sorted(self.counters["lmlab_requests_total"].items())]
            for name in ("lmlab_generated_tokens_total", "lmlab_prompt_tokens_total",
                         "lmlab_preemptions_total"):
                out += [f"# TYPE {name} counter", f"{name} {self.counters[name]}"]
            out += ["# HELP lmlab_tokens_per_second Generated tokens per second over the last "
                    f"{self.window:g} s", "# TYPE lmlab_tokens_per_second gauge",
                    f"lmlab_tokens_per_second {tps:.3f}"]
            for name, (help, fn) in self.gauges.items():
                out += [f"# HELP {name} {help}", f"# TYPE {name} gauge", f"{name} {fn():g}"]
            out += self.ttft.lines() + self.latency.lines()
        return "\n".join(out) + "\n"
