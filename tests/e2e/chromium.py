"""Debian's headless Chromium driven by Selenium, as both browser tests use it."""
from __future__ import annotations

from tests.conftest import have, require

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--lang=en-US")


def chromium(tmp_path, *extra: str, mobile: dict | None = None):
    """A driver (quit it after); fails under CI, skips elsewhere, when Chromium is missing."""
    require(have("chromium") and have("chromedriver"), "Debian packages chromium and chromium-driver are not installed")
    from selenium import webdriver  # a dev dependency: missing, the test fails rather than skips
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (*FLAGS, *extra, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    if mobile:
        options.add_experimental_option("mobileEmulation", mobile)
    options.add_experimental_option("prefs", {"intl.accept_languages": "en-US,en"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(20)
    return driver
