"""Soak `lmlab serve`: N minutes of streaming clients, a third of them hanging up mid-stream,
plus a trickle of malformed requests. On demand, not a test; it takes the shared heavy-work lock
(/tmp/lmlab-heavy.lock) so that nothing else runs beside it.

    .venv/bin/python benchmarks/soak_serve.py                      # 10 minutes, default model
    .venv/bin/python benchmarks/soak_serve.py --minutes 1 --model tiny:llama --out /tmp/soak.json

Every client sends greedy streaming chat requests one after another until the time is up;
clients 0, 3, 6, ... read a random number of chunks and then close the connection. Recorded:
requests served (read to ``[DONE]``), hang-ups, failed well-formed requests (any other end:
must be 0), latency p50 / p99 of the served ones, whether each malformed request got a 4xx JSON
error, the server's RSS after the warm-up and at the end (growth target < 5%), and whether the
server is idle again once the clients stop (hang-ups freed their slots).
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
LOCK = "/tmp/lmlab-heavy.lock"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def malformed(model: str, limit_bytes: int) -> list[tuple[str, str, str, dict]]:
    """(case, method, path, httpx request keywords): each must get a 4xx JSON error."""
    msgs = [{"role": "user", "content": "Hi"}]
    chat = "/v1/chat/completions"
    js = {"headers": {"content-type": "application/json"}}
    return [
        ("bad JSON", "POST", chat, {"content": b'{"model": "x", "messages": [', **js}),
        ("body not an object", "POST", chat, {"json": [1, 2, 3]}),
        ("messages a string", "POST", chat, {"json": {"model": model, "messages": "hi"}}),
        ("max_tokens a string", "POST", chat,
         {"json": {"model": model, "messages": msgs, "max_tokens": "ten"}}),
        ("missing messages", "POST", chat, {"json": {"model": model}}),
        ("empty messages", "POST", chat, {"json": {"model": model, "messages": []}}),
        ("unknown role", "POST", chat,
         {"json": {"model": model, "messages": [{"role": "wizard", "content": "x"}]}}),
        ("unknown model", "POST", chat, {"json": {"model": "no-such-model", "messages": msgs}}),
        ("max_tokens too large", "POST", chat,
         {"json": {"model": model, "messages": msgs, "max_tokens": 10**9}}),
        ("n too large", "POST", chat, {"json": {"model": model, "messages": msgs, "n": 10**6}}),
        ("negative temperature", "POST", chat,
         {"json": {"model": model, "messages": msgs, "temperature": -1}}),
        ("oversized body", "POST", chat,
         {"json": {"model": model, "messages": [{"role": "user",
                                                 "content": "x" * (limit_bytes + 1024)}]}}),
        ("prompt a number", "POST", "/v1/completions", {"json": {"model": model, "prompt": 5}}),
        ("wrong method", "GET", chat, {}),
        ("unknown path", "POST", "/v1/nothing", {"json": {}}),
    ]


class Tally:
    def __init__(self):
        self.served, self.hung_up, self.failed, self.tokens = 0, 0, 0, 0
        self.latency, self.ttft, self.failures = [], [], []
        self.bad = {}  # case -> {"sent", "ok", "statuses"}

    def fail(self, why: str) -> None:
        self.failed += 1
        if len(self.failures) < 20:
            self.failures.append(why)


async def chat(ac, url: str, model: str, question: str, max_tokens: int, hang_up_after: int,
               tally: Tally) -> None:
    """One streaming request; ``hang_up_after`` > 0: close after that many content chunks."""
    body = {"model": model, "messages": [{"role": "user", "content": question}],
            "stream": True, "max_tokens": max_tokens, "temperature": 0,
            "stream_options": {"include_usage": True}}
    t0, first, chunks, done, tokens = time.perf_counter(), None, 0, False, 0
    try:
        async with ac.stream("POST", url + "/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                text = (await r.aread())[:200]
                return tally.fail(f"status {r.status_code}: {text!r}")
            async for line in r.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    ev = json.loads(line[6:])
                    tokens = (ev.get("usage") or {}).get("completion_tokens", tokens)
                    if any((c.get("delta") or {}).get("content") for c in ev.get("choices", [])):
                        chunks += 1
                        first = first or time.perf_counter() - t0
                        if hang_up_after and chunks >= hang_up_after:
                            tally.hung_up += 1
                            return  # leaving the block closes the connection mid-stream
    except Exception as e:  # noqa: BLE001 - any other end of a well-formed request is a failure
        return tally.fail(f"{type(e).__name__}: {e}")
    if not done:
        return tally.fail(f"stream ended without [DONE] after {chunks} chunks")
    tally.served += 1
    tally.tokens += tokens
    tally.latency.append(time.perf_counter() - t0)
    if first is not None:
        tally.ttft.append(first)


async def bad_requests(ac, url: str, cases, every_s: float, deadline: float, tally: Tally):
    i = 0
    while time.monotonic() < deadline:
        case, method, path, kw = cases[i % len(cases)]
        i += 1
        row = tally.bad.setdefault(case, {"sent": 0, "ok": 0, "statuses": []})
        row["sent"] += 1
        try:
            r = await ac.request(method, url + path, **kw)
            is_json = r.headers.get("content-type", "").startswith("application/json")
            ok = 400 <= r.status_code < 500 and is_json and "error" in r.json()
            if r.status_code not in row["statuses"]:
                row["statuses"].append(r.status_code)
        except Exception as e:  # noqa: BLE001 - a dropped connection is a mishandled request
            ok = False
            row.setdefault("errors", []).append(f"{type(e).__name__}: {e}"[:200])
        row["ok"] += ok
        await asyncio.sleep(every_s)


async def soak(url: str, a, pid: int, log) -> dict:
    import httpx

    from lmlab.serve.bench import QUESTIONS

    tally, rss = Tally(), []
    start = time.monotonic()
    deadline = start + a.minutes * 60
    cases = malformed(a.served_name, a.max_request_bytes)

    async def client(c: int):
        rng = random.Random(c)
        hangs_up = c % 3 == 0
        while time.monotonic() < deadline:
            after = rng.randint(1, max(1, a.max_tokens // 2)) if hangs_up else 0
            await chat(ac, url, a.served_name, rng.choice(QUESTIONS), a.max_tokens, after, tally)

    async def sample():
        while time.monotonic() < deadline:
            rss.append((round(time.monotonic() - start, 1), round(rss_mb(pid), 1)))
            if len(rss) % 15 == 0:
                log(f"[soak] {rss[-1][0]:.0f} s: served {tally.served}, hung up "
                    f"{tally.hung_up}, failed {tally.failed}, RSS {rss[-1][1]:.0f} MB")
            await asyncio.sleep(2)

    limits = httpx.Limits(max_connections=a.clients + 16, max_keepalive_connections=a.clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as ac:
        await asyncio.gather(sample(), bad_requests(ac, url, cases, a.bad_every_s, deadline, tally),
                             *[client(c) for c in range(a.clients)])
        idle = await wait_idle(ac, url)
        health = (await ac.get(url + "/health")).status_code
        counts = {line.split('"')[1]: float(line.split()[-1]) for line in
                  (await ac.get(url + "/metrics")).text.splitlines()
                  if line.startswith("lmlab_requests_total{")}
    start_rss, end_rss = rss_windows(rss, a.warmup_s, a.minutes * 60)
    return {"served": tally.served, "hung_up": tally.hung_up, "failed": tally.failed,
            "failures": tally.failures, "tokens": tally.tokens,
            "tok_s": round(tally.tokens / (a.minutes * 60), 2),
            "latency_p50": pct(tally.latency, 50), "latency_p99": pct(tally.latency, 99),
            "ttft_p99": pct(tally.ttft, 99),
            "malformed_sent": sum(r["sent"] for r in tally.bad.values()),
            "malformed_mishandled": sum(r["sent"] - r["ok"] for r in tally.bad.values()),
            "malformed": tally.bad, "server_requests_by_status": counts,
            "rss_mb_ready": rss[0][1], "rss_mb_start": start_rss, "rss_mb_end": end_rss,
            "rss_mb_peak": max(m for _, m in rss), "rss_mb_last": round(rss_mb(pid), 1),
            "rss_growth_pct": round(100 * (end_rss - start_rss) / start_rss, 2),
            "idle_after": idle, "health_after": health, "rss_samples": rss}


def rss_windows(rss: list[tuple[float, float]], warmup_s: float, total_s: float):
    """(RSS just after the warm-up, RSS at the end), each the median of a window of samples
    (a fifth of the run, at most 60 s): a single sample swings with each batch's buffers."""
    import statistics

    w = min(60.0, total_s / 5)
    first = [m for t, m in rss if warmup_s <= t < warmup_s + w] or [rss[0][1]]
    last = [m for t, m in rss if t >= total_s - w] or [rss[-1][1]]
    return statistics.median(first), statistics.median(last)


async def wait_idle(ac, url: str, timeout: float = 60) -> bool:
    """Whether the server reports no running or waiting sequence within ``timeout`` after the
    clients stopped: what a hung-up stream held is freed."""
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        text = (await ac.get(url + "/metrics")).text
        busy = [line for line in text.splitlines()
                if line.startswith(("lmlab_running_sequences ", "lmlab_waiting_requests "))
                and float(line.split()[1]) > 0]
        if not busy:
            return True
        await asyncio.sleep(1)
    return False


def pct(xs: list[float], q: float) -> float | None:
    from lmlab.serve.bench import pct as _pct

    return round(_pct(xs, q), 3) if xs else None


def paragraph(r: dict) -> str:
    """The RESULTS.md paragraph for one result."""
    target = "met" if r["rss_growth_pct"] < 5 and r["failed"] == 0 else "**not met**"
    return (f"`benchmarks/soak_serve.py {' '.join(r['argv'])}` ({r['date']}, {r['model']}, "
            f"{r['minutes']} min, {r['clients']} streaming clients of which {r['hang_up_clients']}"
            f" hang up mid-stream, {r['max_tokens']} tokens per reply, {r['threads']} threads): "
            f"{r['served']} requests served, {r['hung_up']} hung up, **{r['failed']} failed** "
            f"well-formed requests; latency p50 {r['latency_p50']} s, p99 {r['latency_p99']} s; "
            f"{r['malformed_sent']} malformed requests, {r['malformed_mishandled']} without a 4xx "
            f"JSON error; server RSS {r['rss_mb_start']:.0f} MB after the {r['warmup_s']:g} s "
            f"warm-up, {r['rss_mb_end']:.0f} MB at the end (medians of {r['rss_window_s']:g} s; "
            f"{r['rss_growth_pct']:+.1f}%, peak {r['rss_mb_peak']:.0f} MB); the server counted "
            f"{r['server_requests_by_status'].get('abort', 0):.0f} aborted (hung-up) requests and "
            f"was idle again after the clients stopped: "
            f"{'yes' if r['idle_after'] else 'NO'}. Target (0 failed, growth < 5%): {target}.")


def main() -> None:
    from lmlab.serve.bench import Settings, free_port, lmlab_command, start, stop

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup-s", type=float, default=None,
                    help="RSS growth is measured from here (default: min(60 s, a fifth))")
    ap.add_argument("--bad-every-s", type=float, default=1.0, help="one malformed request per")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/soak_serve.json"))
    a = ap.parse_args()
    a.warmup_s = a.warmup_s if a.warmup_s is not None else min(60.0, a.minutes * 12)
    a.served_name, a.max_request_bytes = a.model, 1 << 20
    log = lambda m: print(m, flush=True)
    with open(LOCK, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"[soak] waiting for {LOCK} (another heavy run holds it)")
            fcntl.flock(lock, fcntl.LOCK_EX)
        s = Settings(model=a.model, threads=a.threads, max_batch_size=a.clients)
        port = free_port()
        cmd = [c.replace("{port}", str(port)) for c in lmlab_command(s)]
        url = f"http://127.0.0.1:{port}"
        logfile = ROOT / "runs" / "bench-soak" / "server.log"
        proc = start(cmd, url, dict(os.environ), logfile)
        log(f"[soak] {a.model}: {a.clients} clients for {a.minutes:g} min against {url} "
            f"(server log {logfile})")
        try:
            t0 = time.perf_counter()
            res = asyncio.run(soak(url, a, proc.pid, log))
        finally:
            stop(proc)
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.processor() or
              platform.machine(), "cpus": os.cpu_count(), "argv": sys.argv[1:],
              "model": a.model, "minutes": a.minutes, "clients": a.clients,
              "hang_up_clients": len(range(0, a.clients, 3)), "max_tokens": a.max_tokens,
              "threads": a.threads, "warmup_s": a.warmup_s,
              "rss_window_s": min(60.0, a.minutes * 12),
              "total_s": round(time.perf_counter() - t0, 1), "load_avg_end": os.getloadavg(),
              **res}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1))
    log(paragraph(result))
    log(f"[soak] wrote {a.out}")
    if result["failed"] or result["malformed_mishandled"] or not result["idle_after"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
