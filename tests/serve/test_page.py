"""The chat page at / in a real headless Chromium (Debian `chromium` + `chromium-driver`, driven
by selenium): a streamed reply appears, the conversation history is sent back, tokens/s shows."""

import json

import pytest

from ..browser import needs_browser, start_browser
from .conftest import live_server, make_app

pytestmark = needs_browser


@pytest.fixture(scope="module")
def browser():
    drv = start_browser()
    yield drv
    drv.quit()


def test_chat_page_streams_keeps_history_and_shows_speed(browser, tokenizer):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    app, engine = make_app(tokenizer)
    seen = []  # the message lists the page sent
    submit = engine.submit

    def spy(ids, params, top_logprobs=0):
        seen.append(tokenizer.decode(ids))
        return submit(ids, params, top_logprobs)

    engine.submit = spy
    with live_server(app) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda d: d.find_element(By.ID, "model").text == "tiny:llama")
        browser.execute_script("document.getElementById('max_tokens').value = 12;"
                               "document.getElementById('temperature').value = 0;")

        def ask(text, n_bubbles):
            box = browser.find_element(By.ID, "prompt")
            box.send_keys(text)
            browser.find_element(By.ID, "send").click()
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".msg")) == n_bubbles and
                       not d.find_element(By.ID, "send").get_attribute("disabled"))
            return browser.find_elements(By.CSS_SELECTOR, ".msg.assistant")[-1].text

        first = ask("Hello there", 2)
        assert first.strip() and not browser.find_elements(By.CSS_SELECTOR, ".msg.error")
        stats = browser.find_element(By.ID, "stats")
        assert "tokens/s" in stats.text and "time to first token" in stats.text
        assert float(stats.get_attribute("data-tokens-per-second")) > 0
        ask("And then?", 4)
        # the second request carried the whole conversation: both user turns and the reply
        assert "Hello there" in seen[1] and "And then?" in seen[1]
        assert first.strip()[:20] in seen[1]
        browser.find_element(By.ID, "clear").click()
        assert browser.find_elements(By.CSS_SELECTOR, ".msg") == []
        assert json.loads(browser.execute_script("return JSON.stringify(convo)")) == []
