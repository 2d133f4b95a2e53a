"""Serving: concurrent streaming clients against `lmlab serve` vs sequential HF `generate`
(and vs `transformers serve` when it runs here). On demand, not a test.

    .venv/bin/python benchmarks/bench_serve.py                        # 1/4/16/64 clients
    .venv/bin/python benchmarks/bench_serve.py --levels 1 16 --peers none

Each level runs ``clients`` asyncio clients on loopback, each sending ``--rounds`` streaming chat
requests one after another (greedy; ``ignore_eos`` so every reply is exactly ``--max-tokens``
tokens; tokens are counted from each reply's ``usage``). `transformers serve` refuses
``ignore_eos``, so it is compared at ``--peer-levels`` with a second run of ours where replies
end at EOS on both sides (rows marked "(EOS)"; greedy, same weights: the same replies). Reported:
aggregate generated tokens/s over the level's wall time, time to first token (first content
chunk) and request latency, p50 / p99. The servers run in their own processes with
``--threads`` torch threads; the HF baseline runs first, in this process, with as many.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ["What is the capital of France?", "Write a haiku about the sea.",
             "Explain photosynthesis in one sentence.", "Give three tips for learning Python.",
             "What is 17 times 3?", "Name a famous painter and one of their works.",
             "Why is the sky blue?", "Describe a cat to someone who has never seen one."]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))] if xs else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- baseline


def hf_sequential(model_ref: str, n: int, max_tokens: int, threads: int) -> dict:
    """HF ``generate``, greedy, one request at a time (what a naive server does)."""
    import torch

    from lmlab.models import load_model, load_tokenizer

    torch.set_num_threads(threads)
    tok, model = load_tokenizer(model_ref), load_model(model_ref).eval()
    toks, ttft_proxy, t0 = 0, [], time.perf_counter()
    for i in range(n):
        msgs = [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]
        ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True)
        s = time.perf_counter()
        out = model.generate(**ids, max_new_tokens=max_tokens, min_new_tokens=max_tokens,
                             do_sample=False, pad_token_id=tok.pad_token_id)
        toks += out.shape[1] - ids["input_ids"].shape[1]
        ttft_proxy.append(time.perf_counter() - s)
    wall = time.perf_counter() - t0
    del model
    return {"server": "HF generate, sequential", "clients": 1, "requests": n, "tokens": toks,
            "seconds": round(wall, 2), "tok_s": round(toks / wall, 2),
            "latency_p50": round(pct(ttft_proxy, 50), 3),
            "latency_p99": round(pct(ttft_proxy, 99), 3)}


# ----------------------------------------------------------------------------- servers


def start(cmd: list[str], url: str, env: dict, log: Path, timeout: float = 300):
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited; see {log}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"{cmd} did not start in {timeout} s; see {log}")


def stop(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


async def one_request(ac, url: str, model: str, i: int, max_tokens: int,
                      ignore_eos: bool = True) -> dict:
    body = {"model": model, "messages": [{"role": "user",
                                          "content": QUESTIONS[i % len(QUESTIONS)]}],
            "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    if ignore_eos:  # an extension transformers serve refuses (422)
        body["ignore_eos"] = True
    t0 = time.perf_counter()
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
    return {"clients": clients, "requests": len(flat), "failed": len(flat) - len(good),
            "counted": sorted({x["counted"] for x in good}),
            "tokens": toks, "seconds": round(wall, 2), "tok_s": round(toks / wall, 2),
            "ttft_p50": round(pct(ttft, 50), 3), "ttft_p99": round(pct(ttft, 99), 3),
            "latency_p50": round(pct(lat, 50), 3), "latency_p99": round(pct(lat, 99), 3)}


def bench_server(name, cmd, model, args, env, logdir, levels, ignore_eos=True) -> list[dict]:
    port = free_port()
    cmd = [c.replace("{port}", str(port)) for c in cmd]
    url = f"http://127.0.0.1:{port}"
    print(f"[bench] starting {name}: {' '.join(cmd)}", flush=True)
    proc = start(cmd, url, env, logdir / f"{name.split()[0]}.log")
    rows = []
    try:
        asyncio.run(level(url, model, 1, 1, 4, 120))  # warm-up
        for c in levels:
            rounds = max(1, args.requests // c) if c < args.requests else 1
            try:
                row = asyncio.run(level(url, model, c, rounds, args.max_tokens, args.level_s,
                                        ignore_eos))
            except asyncio.TimeoutError:
                row = {"clients": c, "error": f"over {args.level_s} s"}
            row = {"server": name, **row}
            print(f"[bench] {json.dumps(row)}", flush=True)
            rows.append(row)
    finally:
        stop(proc)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--levels", type=int, nargs="*", default=[1, 4, 16, 64])
    ap.add_argument("--requests", type=int, default=16,
                    help="requests per level at least (clients x rounds)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--hf-requests", type=int, default=4)
    ap.add_argument("--peer-levels", type=int, nargs="+", default=[1, 16],
                    help="levels for transformers serve (it is slow at high concurrency)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-batch-size", type=int, default=64)
    ap.add_argument("--level-s", type=float, default=240, help="time limit of one level")
    ap.add_argument("--peers", nargs="+", default=["hf", "transformers-serve"],
                    choices=["hf", "transformers-serve", "transformers-serve-cb", "none"])
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/serve.json"))
    args = ap.parse_args()
    logdir = ROOT / "runs" / "bench-serve"
    logdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    t_all = time.perf_counter()
    rows = []
    if "hf" in args.peers:
        rows.append(hf_sequential(args.model, args.hf_requests, args.max_tokens, args.threads))
        print(f"[bench] {json.dumps(rows[-1])}", flush=True)
    lmlab = [str(ROOT / ".venv/bin/lmlab"), "serve", f"model={args.model}", "port={port}",
             f"threads={args.threads}", f"max_batch_size={args.max_batch_size}",
             "max_waiting=512", "log_level=warning"]
    if args.levels:
        rows += bench_server("lmlab serve", lmlab, args.model, args, env, logdir, args.levels)
    peers = [p for p in args.peers if p.startswith("transformers-serve")]
    if peers:  # it refuses ignore_eos: compare with replies ending at EOS on both sides
        rows += bench_server("lmlab serve (EOS)", lmlab, args.model, args, env, logdir,
                             args.peer_levels, ignore_eos=False)
    for peer in peers:
        from lmlab.models.load import model_folder
        from lmlab.models.registry import ALIASES

        folder = str(model_folder(ALIASES[args.model])) if args.model in ALIASES else args.model
        cmd = [str(ROOT / ".venv/bin/transformers"), "serve", folder, "--port", "{port}",
               "--device", "cpu", "--dtype", "float32"]
        cb = peer.endswith("cb")
        if cb:
            cmd.append("--continuous-batching")
        try:
            rows += bench_server(f"transformers serve{' (CB)' if cb else ''} (EOS)", cmd,
                                 folder, args, env, logdir, args.peer_levels, ignore_eos=False)
        except RuntimeError as e:
            rows.append({"server": peer, "error": str(e)})
            print(f"[bench] {peer}: {e}", flush=True)
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.processor() or
              platform.machine(), "cpus": os.cpu_count(), "threads": args.threads,
              "model": args.model, "max_tokens": args.max_tokens, "argv": sys.argv[1:],
              "load_avg_end": os.getloadavg(), "total_s": round(time.perf_counter() - t_all, 1),
              "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"[bench] wrote {args.out} ({result['total_s']} s)")


if __name__ == "__main__":
    main()
