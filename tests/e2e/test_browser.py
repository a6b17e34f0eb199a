"""A real headless Chromium on a phone-sized viewport walks the visitor journey."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.chromium import chromium
from tests.livecheck import footfall_process

ARTIFACTS = Path(os.environ.get("FOOTFALL_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts"))
pytestmark = pytest.mark.browser


@pytest.fixture
def browser(tmp_path):
    driver = chromium(tmp_path, mobile={
        "deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 3.0},
        "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    })
    try:
        yield driver
    finally:
        driver.quit()


def test_phone_fills_the_splash_and_gets_online(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    # While the page navigates, Chromium may answer for a node of the page going away with a plain
    # WebDriverException ("Node with given id does not belong to the document"): wait past it too.
    wait = WebDriverWait(browser, 10, ignored_exceptions=(StaleElementReferenceException, WebDriverException))

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with footfall_process(["demo", "--port", "0", "--data-dir", str(tmp_path / "demo")]) as (proc, port):
        base = f"http://127.0.0.1:{port}"
        browser.get(f"{base}/?continue=http%3A%2F%2Fexample.com%2Fnews")
        assert browser.find_element(By.TAG_NAME, "h1").text == "Free WiFi"
        assert browser.execute_script("return window.innerWidth") == 390
        # The layout fits the phone: nothing wider than the viewport.
        assert browser.execute_script("return document.documentElement.scrollWidth") <= 390
        boxes = browser.find_elements(By.CSS_SELECTOR, "input[type=checkbox]")
        assert [b.get_attribute("name") for b in boxes] == ["terms", "age", "marketing", "marketing", "marketing",
                                                            "analytics", "analytics"]
        assert not any(b.is_selected() for b in boxes), "every box starts unticked"
        browser.save_screenshot(str(ARTIFACTS / "splash-phone.png"))

        browser.find_element(By.ID, "email").send_keys("browser.visitor@example.com")
        browser.find_element(By.ID, "name").send_keys("Lan")
        browser.find_element(By.ID, "terms").click()
        browser.find_element(By.ID, "marketing_sms").click()  # needs a phone: the server must say so
        browser.find_element(By.ID, "age").click()            # "I am 16 or older": needed for any optional box
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        error = wait.until(lambda d: d.find_element(By.ID, "phone-error"))
        assert error.text == "Enter a phone number to receive offers by SMS or Zalo."
        assert browser.find_element(By.ID, "email").get_attribute("value") == "browser.visitor@example.com"

        browser.find_element(By.ID, "phone").send_keys("0912 345 678")
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "h1").text == "You are online")
        assert browser.current_url.startswith(f"{base}/online")
        link = browser.find_element(By.CSS_SELECTOR, "a.button")
        assert link.get_attribute("href") == "http://example.com/news"
        browser.save_screenshot(str(ARTIFACTS / "online-phone.png"))

        browser.get(f"{base}/my-data")
        wait.until(lambda d: d.find_element(By.TAG_NAME, "h1").text == "My data")
        page = browser.page_source
        assert "b***@example.com" in page and "browser.visitor@example.com" not in page
        browser.save_screenshot(str(ARTIFACTS / "my-data-phone.png"))
    assert (ARTIFACTS / "online-phone.png").stat().st_size > 10_000
