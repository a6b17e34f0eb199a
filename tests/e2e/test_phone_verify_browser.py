"""Issue 11 in a real headless Chromium on a phone-sized viewport: a visitor types a phone number,
gets a one-time code by SMS and enters it, against a real `footfall portal` whose SMS driver is
eSMS pointed at a local server speaking eSMS.vn's API (tests/messages/providers.py). The code is
read off that server's received messages, as the phone would read the SMS.

Two stores: verify_when = after (online at once, the code form on the "online" page) and
verify_when = before (the code page first, online only once the code is entered). Screenshots go
to the test's tmp dir; their paths are printed (pytest -s shows them).
"""
from __future__ import annotations

import json
import time
import urllib.request

import pytest

from tests.e2e.chromium import chromium
from tests.livecheck import footfall_process
from tests.messages.providers import Provider, free_port

pytestmark = pytest.mark.browser

WIDTH = 390
PHONE_UA = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0.0.0 Mobile Safari/537.36")


@pytest.fixture
def esms():
    provider = Provider("esms")
    yield provider
    provider.close()


@pytest.fixture
def browser(tmp_path):
    driver = chromium(tmp_path, mobile={"deviceMetrics": {"width": WIDTH, "height": 844, "pixelRatio": 3.0},
                                        "userAgent": PHONE_UA})
    try:
        yield driver
    finally:
        driver.quit()


def portal(tmp_path, esms: Provider, verify_when: str):
    """A real `footfall portal` on a loopback port, null gateway, SMS through the local eSMS server."""
    port = free_port()
    env = {"FOOTFALL_DATA_DIR": str(tmp_path / f"data-{verify_when}"), "FOOTFALL_LISTEN_HOST": "127.0.0.1",
           "FOOTFALL_LISTEN_PORT": str(port), "FOOTFALL_PORTAL_URL": f"http://127.0.0.1:{port}",
           "FOOTFALL_GATEWAY": "null", "FOOTFALL_LOG_LEVEL": "WARNING", "FOOTFALL_STORE_NAME": "Cà Phê Test",
           "FOOTFALL_VERIFY_WHEN": verify_when, "FOOTFALL_EMAIL_DRIVER": "none", "FOOTFALL_ZALO_DRIVER": "none",
           "FOOTFALL_SMS_DRIVER": "esms", "FOOTFALL_ESMS_URL": esms.url, "FOOTFALL_ESMS_API_KEY": "k",
           "FOOTFALL_ESMS_SECRET_KEY": "s", "FOOTFALL_ESMS_BRANDNAME": "CAPHE"}
    return footfall_process(["portal"], env)


def wait_sms_code(esms: Provider, e164: str, timeout: float = 15.0) -> str:
    """The newest code the portal asked the provider to deliver to this phone (bounded wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        codes = esms.codes(e164)
        if codes:
            return codes[-1]
        time.sleep(0.05)
    raise AssertionError(f"the SMS provider received no code for {e164}: {esms.received!r}")


def captive(base: str) -> bool:
    """RFC 8908 as this machine (the browser's own address, so its device) sees it."""
    with urllib.request.urlopen(f"{base}/api/captive", timeout=10) as answer:
        return json.loads(answer.read())["captive"]


def shot(browser, tmp_path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    browser.save_screenshot(str(path))
    assert path.stat().st_size > 10_000, f"{path} looks empty"
    print(f"screenshot: {path}")


def fits_the_phone(browser) -> None:
    assert browser.execute_script("return window.innerWidth") == WIDTH
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= WIDTH, f"the page is {width}px wide on a {WIDTH}px phone (horizontal scrolling)"


def fill_splash(browser, base: str, phone: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{base}/?continue=http%3A%2F%2Fexample.com%2Fnews")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Free WiFi"
    fits_the_phone(browser)
    browser.find_element(By.ID, "phone").send_keys(phone)
    browser.find_element(By.ID, "terms").click()


def enter_code(browser, wait, code: str) -> None:
    from selenium.webdriver.common.by import By

    box = browser.find_element(By.CSS_SELECTOR, ".card.verify input[name=code]")
    assert box.get_attribute("autocomplete") == "one-time-code" and box.get_attribute("inputmode") == "numeric"
    box.clear()
    box.send_keys(code)
    box.find_element(By.XPATH, "./ancestor::form//button[@type='submit']").click()


def the_code_form(browser, wait, masked: str):
    from selenium.webdriver.common.by import By

    card = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".card.verify[data-kind=phone]"))
    assert f"We sent a 6-digit code by SMS to {masked}." in card.text
    return card


@pytest.mark.parametrize("verify_when", ["after", "before"])
def test_a_phone_number_is_proved_with_the_sms_code(browser, tmp_path, esms, verify_when):
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 15, ignored_exceptions=(StaleElementReferenceException, WebDriverException))
    phone, e164, masked = "0912 345 678", "+84912345678", "+849*****678"
    with portal(tmp_path, esms, verify_when) as (_proc, port):
        base = f"http://127.0.0.1:{port}"
        fill_splash(browser, base, phone)
        shot(browser, tmp_path, f"{verify_when}-1-splash")
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

        if verify_when == "after":
            # Online at once; the code form waits on the "online" page.
            wait.until(lambda d: d.find_element(By.TAG_NAME, "h1").text == "You are online")
            assert browser.current_url.startswith(f"{base}/online")
            assert not captive(base)
        else:
            # The code page first; an SMS needs no internet, so the device stays behind the portal.
            wait.until(lambda d: d.find_element(By.TAG_NAME, "h1").text == "Confirm it is you")
            assert browser.current_url == f"{base}/verify"
            assert "Enter the code we sent you to get online." in browser.find_element(By.TAG_NAME, "main").text
            assert captive(base)
        the_code_form(browser, wait, masked)
        fits_the_phone(browser)
        shot(browser, tmp_path, f"{verify_when}-2-code-page")

        # A wrong code first: said clearly, the form stays, nothing proved.
        code = wait_sms_code(esms, e164)
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        enter_code(browser, wait, wrong)
        alert = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "[role=alert]"))
        assert alert.text == "That code is not right. Check it and try again."
        the_code_form(browser, wait, masked)
        fits_the_phone(browser)
        if verify_when == "before":
            assert captive(base)
        shot(browser, tmp_path, f"{verify_when}-3-wrong-code")

        # The SMS the provider was asked to deliver: its code, typed on the phone.
        [sms] = [r["body"] for r in esms.received]
        assert sms["Phone"] == "84912345678" and sms["Brandname"] == "CAPHE" and code in sms["Content"]
        enter_code(browser, wait, code)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "h1").text == "You are online")
        assert browser.current_url.startswith(f"{base}/online")
        confirmed = browser.find_element(By.CSS_SELECTOR, "p.notice[role=status]")
        assert confirmed.text == "Thank you: your contact is confirmed."
        assert not browser.find_elements(By.CSS_SELECTOR, ".card.verify"), "the code form is gone once proved"
        if verify_when == "before":  # the continue URL survived the code page
            link = browser.find_element(By.CSS_SELECTOR, "a.button")
            assert link.get_attribute("href") == "http://example.com/news"
        assert not captive(base)
        fits_the_phone(browser)
        shot(browser, tmp_path, f"{verify_when}-4-online")

        # "My data" shows the phone as proved, masked.
        browser.get(f"{base}/my-data")
        wait.until(lambda d: d.find_element(By.TAG_NAME, "h1").text == "My data")
        assert masked in browser.page_source and "0912345678" not in browser.page_source
        fits_the_phone(browser)
    assert len(esms.received) == 1, "one SMS for one sign-in"
