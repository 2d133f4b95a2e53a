"""Headless Chromium for the page tests (serve's chat page, the studio): where the browser is,
the skip when it is not, and how it starts. Importing this skips the importing test module
when selenium is not installed."""

from __future__ import annotations

import shutil

import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

CHROME = shutil.which("chromium") or shutil.which("chromium-browser") or \
    shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(
    not (CHROME and DRIVER),
    reason="needs a headless browser: apt-get install -y chromium chromium-driver")


def start_browser(window: str = "1100,700", script_timeout: float = 60):
    """A headless Chromium driver; the caller quits it."""
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROME
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              f"--window-size={window}"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    drv.set_script_timeout(script_timeout)
    return drv
