"""The studio in a real headless Chromium (selenium, as tests/serve/test_page.py): the runs
table, a curve that grows while a run writes metrics, compare, a form error beside its field;
and a tiny run launched from the form, stopped, resumed and compared. Screenshots of each
view go to $LMLAB_STUDIO_SHOTS (docs/studio refreshes the images docs/studio.md shows) or a
temporary folder."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path

import pytest

from lmlab.studio.app import create_app
from lmlab.studio.context import StudioContext
from lmlab.studio.jobs import JobQueue

from ..browser import needs_browser, start_browser
from .conftest import age, live, make_run

pytestmark = needs_browser
# A test run must not rewrite tracked files: the shots go to a temporary folder unless
# LMLAB_STUDIO_SHOTS names one (LMLAB_STUDIO_SHOTS=docs/studio refreshes the docs' images).
SHOTS = Path(os.environ.get("LMLAB_STUDIO_SHOTS") or
             Path(tempfile.gettempdir()) / "lmlab-studio-shots")


@pytest.fixture(scope="module")
def browser():
    drv = start_browser("1280,900", script_timeout=30)
    yield drv
    drv.quit()


def shot(browser, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / f"{name}.png"))


def wait(browser, cond, timeout: float = 30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(cond)


def rows_shown(browser) -> int:
    from selenium.webdriver.common.by import By

    return int(browser.find_element(By.ID, "points").get_attribute("data-rows") or 0)


class Writer(threading.Thread):
    """Appends a metrics row every 0.1 s (a run logging 10 steps/s) until stopped."""

    def __init__(self, path: Path, start: int):
        super().__init__(daemon=True)
        self.path, self.step, self.done = path, start, threading.Event()

    def run(self):
        while not self.done.is_set():
            self.step += 1
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": self.step, "train/loss": 3.0 / self.step,
                                    "train/lr": 1e-3}) + "\n")
            time.sleep(0.1)


def test_runs_live_curve_compare_and_form_error(browser, tmp_path):
    from selenium.webdriver.common.by import By

    make_run(tmp_path, "sft-a", summary=True, rows=20, lr=0.001)
    make_run(tmp_path, "sft-b", checkpoint=10, rows=10, lr=0.002)
    bad = make_run(tmp_path, "damaged", config=False)
    with open(bad / "metrics.jsonl", "a") as f:
        f.write("{half a row\n")
    age(bad, 3600)
    live_run = make_run(tmp_path, "sft-live", rows=1, old=False)
    app = create_app(StudioContext(root=tmp_path, queue=JobQueue(tmp_path)))
    writer = Writer(live_run / "metrics.jsonl", 1)
    with live(app) as url:
        browser.get(url + "/")
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#runs tbody tr")) == 4)
        status = {tr.get_attribute("data-run"): tr.get_attribute("data-status")
                  for tr in browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")}
        assert status == {"sft-a": "finished", "sft-b": "interrupted", "damaged": "failed",
                          "sft-live": "running"}
        problem = browser.find_element(By.CSS_SELECTOR, "tr[data-run=damaged] td.problem").text
        assert "config.yaml is missing" in problem and "metrics.jsonl:4" in problem
        shot(browser, "runs")

        browser.get(url + "/run/sft-live")
        wait(browser, lambda d: rows_shown(d) >= 1)
        writer.start()
        try:
            first = rows_shown(browser)
            wait(browser, lambda d: rows_shown(d) >= first + 10, timeout=20)  # it grows, live
            plot = browser.find_element(By.CSS_SELECTOR, "svg.plot[data-key='train/loss']")
            assert int(plot.get_attribute("data-points")) >= first + 10
            shot(browser, "run")
        finally:
            writer.done.set()
            writer.join()

        browser.find_element(By.CSS_SELECTOR, "a[href='/']").click()
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "input[data-run='sft-a']"))
        for name in ("sft-a", "sft-b"):
            browser.find_element(By.CSS_SELECTOR, f"input[data-run='{name}']").click()
        browser.find_element(By.ID, "compare").click()
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#diff tr.diff"))
        diff = [tr.text for tr in browser.find_elements(By.CSS_SELECTOR, "#diff tr.diff")]
        assert diff == ["lr 0.001 0.002"]
        loss = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR,
                                                       "svg[data-key='train/loss'] path"))
        assert {p.get_attribute("data-series") for p in loss} == {"sft-a", "sft-b"}
        assert "final_loss 1.5000" in browser.find_element(By.ID, "numbers").text
        shot(browser, "compare")

        browser.get(url + "/launch?stage=sft&recipe=tiny")
        box = wait(browser, lambda d: d.find_element(By.ID, "f-max_steps"))
        assert box.get_attribute("value") == "3"
        box.clear()
        box.send_keys("-1")
        browser.find_element(By.ID, "check").click()
        err = wait(browser, lambda d: d.find_element(By.ID, "err-max_steps").text or None)
        assert err == "max_steps: -1 is out of range (must be >= 0)"
        browser.execute_script("window.scrollTo(0, 0)")
        shot(browser, "launch")


# in the default run: issue 30 asks for launch / stop / resume and a real serve start in CI
# (about 12 s each on an idle 2-core machine)
def test_launch_watch_stop_resume_and_compare_a_tiny_run(browser, tmp_path):
    """A real `lmlab sft` on tiny:llama from the form: its curve grows, Stop saves a checkpoint
    (the run is interrupted), Resume continues it from there, and it compares with a second
    run."""
    import httpx
    from selenium.webdriver.common.by import By

    make_run(tmp_path, "other", summary=True, rows=30)
    ctx = StudioContext(root=tmp_path, queue=JobQueue(tmp_path))
    with live(create_app(ctx)) as url:
        browser.get(url + "/launch?stage=sft&recipe=tiny")
        wait(browser, lambda d: d.find_element(By.ID, "f-max_steps"))
        for key, value in (("output_dir", "tiny-run"), ("max_steps", "400"),
                           ("save_every", "2"), ("eval_n", "2")):
            box = browser.find_element(By.ID, f"f-{key}")
            box.clear()
            box.send_keys(value)
        browser.find_element(By.ID, "launch").click()
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR,
                                                "#jobs tr[data-status=running]"), timeout=30)
        browser.execute_script("window.scrollTo(0, 0)")
        shot(browser, "launch-job")
        browser.get(url + "/run/tiny-run")  # before the stage has made the folder: it waits
        wait(browser, lambda d: rows_shown(d) >= 2, timeout=180)
        seen = rows_shown(browser)
        wait(browser, lambda d: rows_shown(d) >= seen + 2, timeout=120)
        shot(browser, "run-live")
        browser.find_element(By.ID, "stop").click()
        job = next(iter(ctx.queue.jobs))
        assert ctx.queue.wait(job, timeout=120)["status"] == "stopped"
        resume = wait(browser, lambda d: d.find_element(By.ID, "resume").is_displayed()
                      and d.find_element(By.ID, "resume"), timeout=30)
        ckpt = httpx.get(url + "/api/runs/tiny-run/details").json()["row"]
        assert ckpt["status"] == "interrupted" and ckpt["checkpoint"] >= 2
        resume.click()
        again = wait(browser, lambda d: len(ctx.queue.jobs) == 2 and list(ctx.queue.jobs)[1])
        assert "resume=auto" in ctx.queue.status(again)["command"]
        wait(browser, lambda d: rows_shown(d) > ckpt["checkpoint"] + 2, timeout=180)
        ctx.queue.stop(again)
        assert ctx.queue.wait(again, timeout=120)["status"] == "stopped"
        text = (tmp_path / ".studio" / "jobs" / f"{again}.log").read_text()
        assert f"resumed from {tmp_path / 'tiny-run'}" in text
        browser.get(url + "/compare?runs=tiny-run,other")
        loss = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR,
                                                       "svg[data-key='train/loss'] path"))
        assert {p.get_attribute("data-series") for p in loss} == {"tiny-run", "other"}
