"""`lmlab studio` responsiveness: 200 run folders and one run logging 10 steps/s.

Measures, against a real `lmlab studio` process on loopback:
- first load of ``/`` (the HTML) and of ``/api/runs`` (the cold scan of every folder), then a
  warm ``/api/runs`` (what the page's 2 s refresh costs);
- with a headless Chromium (when installed): navigation to the runs table drawn with every row;
- live updates: a row written to the live run's ``metrics.jsonl`` -> the same row delivered by
  ``/api/runs/<name>/events`` (server-sent events); each row carries its write time.
Targets (issue 30): first load < 1 s, live updates within 1 s.

    .venv/bin/python benchmarks/bench_studio.py                # the measurement
    .venv/bin/python benchmarks/bench_studio.py --smoke        # a plumbing check, not a number
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
LOCK = "/tmp/lmlab-heavy.lock"


def fake_runs(root: Path, n: int, rows: int) -> None:
    """``n`` finished/interrupted run folders shaped like `lmlab sft` writes them."""
    from lmlab.stages import sft

    base = {"stage": "sft", **{k: v for k, v in vars(sft.Config()).items()}}
    for i in range(n):
        path = root / f"sft-{i:03d}"
        (path / "checkpoints" / "step-50").mkdir(parents=True)
        (path / "checkpoints" / "step-50" / "state.pt").write_bytes(b"x")
        cfg = dict(base, lr=1e-4 * (1 + i % 7), seed=i, output_dir=str(path), max_steps=rows)
        (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        with open(path / "metrics.jsonl", "w") as f:
            f.writelines(json.dumps({"step": s, "train/loss": 3.0 / s, "train/lr": 1e-4,
                                     "train/grad_norm": 1.0, "train/tokens": 512,
                                     "train/step_s": 0.3, "train/tokens_per_s": 1700.0}) + "\n"
                         for s in range(1, rows + 1))
        if i % 4:
            (path / "summary.json").write_text(json.dumps({"stage": "sft", "final_loss": 1.0,
                                                           "eval_after": {"accuracy": 0.5}}))
        old = time.time() - 3600 - i
        for p in (path, *path.rglob("*")):
            os.utime(p, (old, old))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def studio(root: Path, port: int):
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "lmlab", "studio", f"root={root}",
                             f"port={port}", "log_level=error"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the studio did not start: {proc.stderr.read().decode()}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


class Writer(threading.Thread):
    """Logs ``rate`` rows/s to ``path``, each with its wall-clock write time."""

    def __init__(self, path: Path, rate: float):
        super().__init__(daemon=True)
        self.path, self.rate, self.stop = path, rate, threading.Event()

    def run(self) -> None:
        step = 0
        while not self.stop.is_set():
            step += 1
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": step, "train/loss": 3.0 / step,
                                    "written": time.time()}) + "\n")
            time.sleep(1.0 / self.rate)


def timed_get(http, url: str) -> float:
    t = time.perf_counter()
    r = http.get(url)
    r.raise_for_status()
    return time.perf_counter() - t


def sse_latencies(url: str, n: int) -> list[float]:
    """Seconds from each row's write to its delivery, for the next ``n`` rows."""
    import httpx

    out = []
    with httpx.Client(timeout=30) as http, http.stream("GET", url) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and '"rows"' in line:
                now = time.time()
                out += [now - row["written"] for row in json.loads(line[6:])["rows"]
                        if "written" in row]
                if len(out) >= n:
                    break
    return out[:n]


def browser_first_load(url: str, n_rows: int) -> float | None:
    chrome, driver = shutil.which("chromium") or shutil.which("google-chrome"), \
        shutil.which("chromedriver")
    if not (chrome and driver):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(driver), options=opts)
    try:
        drv.get("about:blank")
        t = time.perf_counter()
        drv.get(url + "/")
        WebDriverWait(drv, 30, poll_frequency=0.01).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#runs tbody tr")) >= n_rows)
        return time.perf_counter() - t
    finally:
        drv.quit()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--rows", type=int, default=300, help="metrics rows per fake run")
    p.add_argument("--rate", type=float, default=10.0, help="steps/s of the live run")
    p.add_argument("--samples", type=int, default=100, help="live rows timed")
    p.add_argument("--no-browser", action="store_true")
    p.add_argument("--smoke", action="store_true", help="tiny sizes; measures nothing")
    p.add_argument("--out", default="benchmarks/results/studio.json")
    a = p.parse_args()
    if a.smoke:
        a.runs, a.rows, a.samples = 5, 10, 3
    import httpx

    with open(LOCK, "w") as lock, tempfile.TemporaryDirectory() as tmp:
        if not a.smoke:  # a smoke check measures nothing: it does not wait for heavy runs
            fcntl.flock(lock, fcntl.LOCK_EX)
        root = Path(tmp) / "runs"
        root.mkdir()
        fake_runs(root, a.runs, a.rows)
        live = root / "live"
        live.mkdir()
        (live / "config.yaml").write_text("stage: sft\nmodel: tiny:llama\n")
        writer = Writer(live / "metrics.jsonl", a.rate)
        with studio(root, free_port()) as url, httpx.Client(timeout=30) as http:
            writer.start()
            page_s = timed_get(http, url + "/")
            api_cold_s = timed_get(http, url + "/api/runs")
            api_warm_s = statistics.median(timed_get(http, url + "/api/runs") for _ in range(5))
            size = (live / "metrics.jsonl").stat().st_size
            lat = sse_latencies(f"{url}/api/runs/live/events?after={size}", a.samples)
            browser_s = None if a.no_browser else browser_first_load(url, a.runs + 1)
            writer.stop.set()
    lat.sort()
    res = {"page_first_s": page_s, "api_runs_cold_s": api_cold_s, "api_runs_warm_s": api_warm_s,
           "browser_table_s": browser_s, "sse_p50_s": statistics.median(lat),
           "sse_p95_s": lat[int(0.95 * (len(lat) - 1))], "sse_max_s": lat[-1],
           "sse_samples": len(lat)}
    res["first_load_under_1s"] = max(page_s, api_cold_s, browser_s or 0) < 1.0
    res["live_under_1s"] = res["sse_max_s"] < 1.0
    env = {"python": sys.version.split()[0], "cpu": platform.processor() or platform.machine(),
           "cores": os.cpu_count()}
    report = {"args": vars(a), "env": env, "results": res}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=2) + "\n")
    print("| runs | / first | /api/runs cold | warm | table in browser | SSE p50 | p95 | max |")
    print("|---|---|---|---|---|---|---|---|")
    b = f"{browser_s:.3f} s" if browser_s is not None else "-"
    print(f"| {a.runs} | {page_s:.3f} s | {api_cold_s:.3f} s | {api_warm_s:.3f} s | {b} | "
          f"{res['sse_p50_s']:.3f} s | {res['sse_p95_s']:.3f} s | {res['sse_max_s']:.3f} s |")


if __name__ == "__main__":
    main()
