"""The serving benchmark: concurrent streaming clients against `lmlab serve`, vs sequential HF
``generate`` and vs `transformers serve` (when it runs here). One copy of the measuring code,
used by ``lmlab bench serve`` (stages/bench.py) and ``benchmarks/bench_serve.py``.

Each level runs ``clients`` asyncio clients on loopback, each sending ``rounds`` streaming chat
requests one after another (greedy; ``ignore_eos`` so every reply is exactly ``max_tokens``
tokens; tokens are counted from each reply's ``usage``). `transformers serve` refuses
``ignore_eos``, so it is compared at ``peer_levels`` with a second run of ours where replies end
at EOS on both sides (rows marked "(EOS)"; greedy, same weights: the same replies). Reported per
row: aggregate generated tokens/s over the level's wall time, time to first token (first content
chunk) and request latency, p50 / p99. ``server="process"`` starts each server in its own
process with ``threads`` torch threads (what a deployment does); ``"thread"`` serves ours from a
thread of this process (starts in a second, but the clients share its GIL: for tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

QUESTIONS = ["What is the capital of France?", "Write a haiku about the sea.",
             "Explain photosynthesis in one sentence.", "Give three tips for learning Python.",
             "What is 17 times 3?", "Name a famous painter and one of their works.",
             "Why is the sky blue?", "Describe a cat to someone who has never seen one."]
PEERS = ("hf", "transformers-serve", "transformers-serve-cb")
HF_NAME = "HF generate, sequential"


@dataclass
class Settings:
    """What one benchmark run measures (the keys of ``lmlab bench serve`` / the script's flags)."""

    model: str = "smollm2-135m-instruct"
    levels: list[int] = field(default_factory=lambda: [1, 4, 16, 64])  # concurrent clients
    requests: int = 16  # requests per level at least (clients x rounds)
    max_tokens: int = 64  # tokens per reply
    hf_requests: int = 4  # requests of the sequential HF baseline
    peer_levels: list[int] = field(default_factory=lambda: [1, 16])  # transformers serve
    peers: list[str] = field(default_factory=lambda: ["hf", "transformers-serve"])
    threads: int = 2  # torch threads of each server and of the HF baseline (0 = default)
    max_batch_size: int = 64  # lmlab serve's max_batch_size
    level_s: float = 240  # time limit of one level
    server: str = "process"  # process | thread
    device: str = "auto"
    dtype: str = "auto"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))] if xs else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rounds_for(clients: int, requests: int) -> int:
    """Requests each client sends one after another, so a level sends >= ``requests``."""
    return max(1, requests // clients) if clients < requests else 1


# ----------------------------------------------------------------------------- baseline


def hf_sequential(model_ref: str, n: int, max_tokens: int, threads: int = 0,
                  device: str = "auto", dtype: str = "auto") -> dict:
    """HF ``generate``, greedy, one request at a time (what a naive server does)."""
    import torch

    from lmlab.common import pick_device, pick_dtype
    from lmlab.models import load_model, load_tokenizer

    if threads:
        torch.set_num_threads(threads)
    dev = pick_device(device)
    tok = load_tokenizer(model_ref)
    model = load_model(model_ref, dtype=pick_dtype(dtype, dev), device=dev).eval()
    toks, latency, t0 = 0, [], time.perf_counter()
    for i in range(n):
        msgs = [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]
        ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True).to(dev)
        s = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=max_tokens, min_new_tokens=max_tokens,
                                 do_sample=False, pad_token_id=tok.pad_token_id)
        toks += out.shape[1] - ids["input_ids"].shape[1]
        latency.append(time.perf_counter() - s)
    wall = time.perf_counter() - t0
    del model
    return {"server": HF_NAME, "clients": 1, "requests": n, "failed": 0, "tokens": int(toks),
            "seconds": round(wall, 3), "tok_s": round(toks / wall, 2),
            "latency_p50": round(pct(latency, 50), 3), "latency_p99": round(pct(latency, 99), 3)}


# ----------------------------------------------------------------------------- servers


def start(cmd: list[str], url: str, env: dict, log: Path, timeout: float = 300,
          ready_path: str = "/health"):
    """Start a server process and wait until ``ready_path`` (``/health``; a server without
    one: e.g. ``/v1/models``) answers 200."""
    import httpx

    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{Path(cmd[0]).name} exited (code {proc.returncode}); see {log}")
        try:
            if httpx.get(url + ready_path, timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"{' '.join(cmd)} did not start in {timeout} s; see {log}")


def stop(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def process_server(cmd: list[str], env: dict, log: Path):
    """``cmd`` (with ``{port}`` filled in) in its own process group; yields its base URL."""
    port = free_port()
    proc = start([c.replace("{port}", str(port)) for c in cmd], f"http://127.0.0.1:{port}",
                 env, log)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@contextlib.contextmanager
def live_server(app, start_timeout: float = 60):
    """``app`` under a real uvicorn on a free loopback port, in a thread of this process;
    yields its base URL and stops the server on exit."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if time.monotonic() > deadline or not t.is_alive():
            raise RuntimeError("the in-process server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(timeout=30)


@contextlib.contextmanager
def thread_server(s: Settings):
    """Our server in a thread of this process (uvicorn); yields its base URL."""
    from lmlab.stages.serve import Config, build

    app, _ = build(Config(model=s.model, max_batch_size=s.max_batch_size, max_waiting=512,
                          max_tokens=max(1024, s.max_tokens), threads=s.threads,
                          device=s.device, dtype=s.dtype, log_level="error"))
    with live_server(app) as url:
        yield url


def lmlab_command(s: Settings) -> list[str]:
    """`lmlab serve` as run by this Python (``{port}`` filled in at start)."""
    return [sys.executable, "-m", "lmlab.cli", "serve", f"model={s.model}", "port={port}",
            f"threads={s.threads}", f"max_batch_size={s.max_batch_size}", "max_waiting=512",
            f"max_tokens={max(1024, s.max_tokens)}", f"device={s.device}", f"dtype={s.dtype}",
            "log_level=warning"]


def transformers_command(s: Settings, continuous: bool) -> tuple[list[str], str]:
    """(`transformers serve` command, the model name its clients send)."""
    from lmlab.common import pick_device

    exe = Path(sys.executable).parent / "transformers"
    exe = str(exe) if exe.exists() else (shutil.which("transformers") or "transformers")
    folder = s.model
    with contextlib.suppress(Exception):  # an alias -> its downloaded folder
        from lmlab.models.load import model_folder
        from lmlab.models.registry import ALIASES

        if s.model in ALIASES:
            folder = str(model_folder(ALIASES[s.model]))
    cmd = [exe, "serve", folder, "--port", "{port}", "--device", pick_device(s.device).type,
           "--dtype", {"bf16": "bfloat16", "fp16": "float16"}.get(s.dtype, "float32")]
    return cmd + (["--continuous-batching"] if continuous else []), folder


# ----------------------------------------------------------------------------- clients


async def one_request(ac, url: str, model: str, i: int, max_tokens: int,
                      ignore_eos: bool = True) -> dict:
    body = {"model": model, "messages": [{"role": "user",
                                          "content": QUESTIONS[i % len(QUESTIONS)]}],
            "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    if ignore_eos:  # extensions transformers serve refuses (422); llama_cpp.server has no
        body["ignore_eos"] = True  # ignore_eos but masks EOS for min_tokens (vLLM has both)
        body["min_tokens"] = max_tokens
    t0 = time.perf_counter()
    try:
        return await _stream(ac, url, body, t0)
    except Exception as e:  # a dropped connection or a bad event: a failed request, not a crash
        import httpx

        if not isinstance(e, (httpx.HTTPError, json.JSONDecodeError)):
            raise
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}


async def _stream(ac, url: str, body: dict, t0: float) -> dict:
    first, tokens, chunks, ok = None, 0, 0, False
    async with ac.stream("POST", url + "/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            await r.aread()
            return {"ok": False, "status": r.status_code}
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                ok = True
                continue
            ev = json.loads(line[6:])
            if ev.get("usage"):
                tokens = ev["usage"]["completion_tokens"]
            for c in ev.get("choices") or []:
                if c.get("finish_reason"):
                    ok = True  # (transformers serve sends no [DONE])
                if (c.get("delta") or {}).get("content"):
                    chunks += 1
                    if first is None:
                        first = time.perf_counter() - t0
    # a server that sends no usage: count content chunks (one token each, for the servers here)
    return {"ok": ok, "ttft": first, "latency": time.perf_counter() - t0,
            "tokens": tokens or chunks, "counted": "usage" if tokens else "chunks"}


async def level(url: str, model: str, clients: int, rounds: int, max_tokens: int,
                limit_s: float, ignore_eos: bool = True) -> dict:
    """``clients`` concurrent clients x ``rounds`` requests each: one row of numbers."""
    import httpx

    async def client(c):
        out = []
        for r in range(rounds):
            out.append(await one_request(ac, url, model, c * rounds + r, max_tokens,
                                         ignore_eos))
        return out

    async with httpx.AsyncClient(timeout=limit_s, limits=httpx.Limits(
            max_connections=clients + 8)) as ac:
        t0 = time.perf_counter()
        res = await asyncio.wait_for(asyncio.gather(*[client(c) for c in range(clients)]),
                                     limit_s)
        wall = time.perf_counter() - t0
    flat = [x for xs in res for x in xs]
    good = [x for x in flat if x["ok"]]
    ttft = [x["ttft"] for x in good if x["ttft"] is not None]
    lat = [x["latency"] for x in good]
    toks = sum(x["tokens"] for x in good)
    lens = sorted({x["tokens"] for x in good}) or [0]
    return {"clients": clients, "requests": len(flat), "failed": len(flat) - len(good),
            "counted": ",".join(sorted({x["counted"] for x in good})),
            "tokens": toks, "reply_tokens": f"{lens[0]}-{lens[-1]}" if len(lens) > 1 else lens[0],
            "seconds": round(wall, 3), "tok_s": round(toks / wall, 2),
            "ttft_p50": round(pct(ttft, 50), 3), "ttft_p99": round(pct(ttft, 99), 3),
            "latency_p50": round(pct(lat, 50), 3), "latency_p99": round(pct(lat, 99), 3)}


def measure_levels(name: str, url: str, model: str, s: Settings, levels: list[int],
                   ignore_eos: bool = True, log: Callable = print) -> list[dict]:
    """One warm-up request, then one row per level (a level over ``level_s`` is an error row)."""
    asyncio.run(level(url, model, 1, 1, 4, 120))
    rows = []
    for c in levels:
        try:
            row = asyncio.run(level(url, model, c, rounds_for(c, s.requests), s.max_tokens,
                                    s.level_s, ignore_eos))
        except asyncio.TimeoutError:
            row = {"clients": c, "error": f"over {s.level_s} s"}
        rows.append({"server": name, **row})
        log(f"[bench] {json.dumps(rows[-1])}")
    return rows


# ----------------------------------------------------------------------------- one run


def run_all(s: Settings, logdir: Path, log: Callable = print) -> list[dict]:
    """Every row of one benchmark run: HF baseline, ours, ours (EOS) and the peers."""
    env = dict(os.environ)
    if s.threads:
        env.update(OMP_NUM_THREADS=str(s.threads), MKL_NUM_THREADS=str(s.threads))
    rows = []
    if "hf" in s.peers:
        rows.append(hf_sequential(s.model, s.hf_requests, s.max_tokens, s.threads, s.device,
                                  s.dtype))
        log(f"[bench] {json.dumps(rows[-1])}")
    trs = [p for p in s.peers if p.startswith("transformers-serve")]
    ours = [("lmlab serve", s.levels, True)]
    if trs:  # it refuses ignore_eos: compare with replies ending at EOS on both sides
        ours.append(("lmlab serve (EOS)", s.peer_levels, False))
    for name, levels, ignore_eos in ours:
        if not levels:
            continue
        log(f"[bench] starting {name} ({s.server})")
        served = thread_server(s) if s.server == "thread" else \
            process_server(lmlab_command(s), env, logdir / "lmlab.log")
        with served as url:
            rows += measure_levels(name, url, s.model, s, levels, ignore_eos, log)
    for peer in trs:
        cb = peer.endswith("cb")
        cmd, folder = transformers_command(s, cb)
        name = f"transformers serve{' (CB)' if cb else ''} (EOS)"
        log(f"[bench] starting {name}: {' '.join(cmd)}")
        try:
            with process_server(cmd, env, logdir / f"{peer}.log") as url:
                rows += measure_levels(name, url, folder, s, s.peer_levels, False, log)
        except RuntimeError as e:
            rows.append({"server": name, "error": str(e)})
            log(f"[bench] {peer}: {e}")
    add_speedups(rows)
    return rows


def add_speedups(rows: list[dict]) -> None:
    """``vs_hf``: a row's tokens/s over the sequential HF baseline's, where both exist."""
    hf = next((r.get("tok_s") for r in rows if r.get("server") == HF_NAME), None)
    for r in rows:
        if hf and r.get("tok_s") is not None and r.get("server") != HF_NAME:
            r["vs_hf"] = round(r["tok_s"] / hf, 2)


def table(rows: list[dict]) -> str:
    """The rows as a markdown table (times in seconds)."""
    keys = ("clients", "requests", "failed", "tokens", "tok_s", "vs_hf", "ttft_p50", "ttft_p99",
            "latency_p50", "latency_p99")
    lines = ["| server | clients | requests | failed | tokens | tok/s | vs HF | TTFT p50 s | "
             "TTFT p99 s | latency p50 s | latency p99 s |", "|---" * 11 + "|"]

    def f(k, v):
        if v is None or v != v:  # absent, or NaN (no request measured it)
            return ""
        return f"{v}x" if k == "vs_hf" else str(v)

    for r in rows:
        if "error" in r:
            cells = [f(k, v) for k, v in (("clients", r.get("clients")),
                                          ("error", f"error: {r['error']}"))] + [""] * 8
        else:
            cells = [f(k, r.get(k)) for k in keys]
        lines.append(f"| {r['server']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
