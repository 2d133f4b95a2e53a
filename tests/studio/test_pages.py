"""The chat, arena and deploy pages in a real headless Chromium (selenium; skipped without a
browser): a chat reply streams in, an arena vote lands as a pair in the preference file, the
deploy page starts a (fake) server and queues a quantize job. Screenshots of each view go to
$LMLAB_STUDIO_SHOTS (docs/studio to refresh the docs) or a temporary folder."""

import json
import os
import tempfile
from pathlib import Path

import pytest

from lmlab.serve import bench

from ..browser import needs_browser, start_browser
from .fakes import make_app, studio_ctx
from .test_deploy import FakeProc

pytestmark = needs_browser
# A test run must not rewrite tracked files: the shots go to a temporary folder unless
# LMLAB_STUDIO_SHOTS names one (LMLAB_STUDIO_SHOTS=docs/studio refreshes the docs' images).
SHOTS = Path(os.environ.get("LMLAB_STUDIO_SHOTS") or
             Path(tempfile.gettempdir()) / "lmlab-studio-shots")


@pytest.fixture()
def ctx(tmp_path, tokenizer):
    with studio_ctx(tmp_path, tokenizer) as c:
        yield c


@pytest.fixture(scope="module")
def browser():
    drv = start_browser()
    yield drv
    drv.quit()


def shot(browser, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / name))


def set_value(browser, id_: str, value) -> None:
    browser.execute_script("const e = document.getElementById(arguments[0]); "
                           "e.value = arguments[1]; e.dispatchEvent(new Event('input'));",
                           id_, str(value))


def text(browser, id_: str) -> str:
    return browser.execute_script("return document.getElementById(arguments[0]).textContent",
                                  id_)


def test_chat_arena_vote_and_deploy_in_a_browser(browser, ctx):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from lmlab.studio.deploy import Servers

    (ctx.root / "sft-demo").mkdir()
    ctx.extra["servers"] = Servers(popen=FakeProc)
    wait = WebDriverWait(browser, 60)
    with bench.live_server(make_app(ctx), start_timeout=30) as url:
        # chat: a streamed reply from the tiny model
        browser.get(url + "/chat?model=tiny:llama")
        set_value(browser, "temperature", 0)
        set_value(browser, "max_tokens", 12)
        browser.find_element(By.ID, "prompt").send_keys("Hello there")
        browser.find_element(By.ID, "send").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".msg")) == 2 and
                   not d.find_element(By.ID, "send").get_attribute("disabled"))
        assert browser.find_elements(By.CSS_SELECTOR, ".msg.assistant")[0].text.strip()
        assert not browser.find_elements(By.CSS_SELECTOR, ".msg.error")
        assert "time to first token" in text(browser, "stats")
        shot(browser, "chat.png")

        # arena: two anonymous replies, a vote, the pair in the preference file
        browser.get(url + "/arena")
        set_value(browser, "model_a", "tiny:llama")
        set_value(browser, "model_b", "tiny:llama4")
        set_value(browser, "temperature", 0)
        set_value(browser, "max_tokens", 12)
        browser.find_element(By.ID, "prompt").send_keys("Tell me a story")
        browser.find_element(By.ID, "ask").click()
        wait.until(lambda d: d.find_element(By.ID, "vote-A").is_enabled())
        a, b = text(browser, "reply-A"), text(browser, "reply-B")
        assert a.strip() and b.strip() and a != b
        shot(browser, "arena.png")
        browser.find_element(By.ID, "vote-A").click()
        wait.until(lambda d: "saved to" in text(d, "result"))
        assert "tiny:llama" in text(browser, "result")  # the names show after the vote
        rows = (ctx.root / "arena-preferences.jsonl").read_text().splitlines()
        row = json.loads(rows[-1])
        assert (row["prompt"], row["chosen"], row["rejected"]) == ("Tell me a story", a, b)

        # deploy: the commands, a server started (fake process) and a quantize job queued
        browser.get(url + "/deploy?run=sft-demo")
        wait.until(lambda d: text(d, "cmd-serve").startswith("$ lmlab serve"))
        browser.find_element(By.ID, "serve").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#servers tr[data-status=running]"))
        browser.find_element(By.ID, "quantize").click()
        wait.until(lambda d: "queued job-1" in text(d, "result"))
        assert ctx.queue.jobs[0][0] == "quantize"
        shot(browser, "deploy.png")
        browser.find_element(By.CSS_SELECTOR, "#servers button.stop").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#servers tr[data-status^=exited]"))
