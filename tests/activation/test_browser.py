"""A real headless Chromium: a manager creates a campaign in the panel (with its preview) and
redeems a voucher at the till page, twice (the second is refused with the time of the first)."""
from __future__ import annotations

import dataclasses
import threading

import pytest
from werkzeug.serving import make_server

from portal.activation import vouchers
from portal.activation.models import Automation, Voucher
from tests.activation.conftest import person
from tests.e2e.chromium import chromium
from tests.messages.providers import free_port
from tests.panel.conftest import PASSWORD
from tests.panel.live import _Quiet

pytestmark = pytest.mark.browser
PORT = free_port()


@pytest.fixture
def settings(settings):
    return dataclasses.replace(settings, portal_url=f"http://127.0.0.1:{PORT}")


@pytest.fixture
def live(app):
    server = make_server("127.0.0.1", PORT, app, threaded=True, request_handler=_Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{PORT}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def browser(tmp_path):
    driver = chromium(tmp_path, "--window-size=1280,1400")
    try:
        yield driver
    finally:
        driver.quit()


def test_a_manager_creates_a_campaign_and_redeems_a_voucher(live, browser, rt, accounts_by_role, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    # Under load a page may still be navigating when it is read: Chromium then says the node is not in
    # the document (a WebDriverException), which the wait rides out like a stale element.
    wait = WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException, WebDriverException))
    browser.get(f"{live}/panel/login")
    browser.find_element(By.ID, "username").send_keys("manager1")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: d.find_elements(By.LINK_TEXT, "Activation")).__getitem__(0).click()
    Select(wait.until(lambda d: d.find_element(By.ID, "new-kind"))).select_by_value("campaign")
    browser.find_element(By.ID, "act-new").click()
    wait.until(lambda d: d.find_element(By.ID, "f-name")).send_keys("Tết")
    browser.find_element(By.ID, "ch-email").click()
    browser.find_element(By.ID, "f-voucher").clear()
    browser.find_element(By.ID, "f-voucher").send_keys("10")
    for field, text in (("es-vi", "Chúc mừng năm mới {name}"), ("et-vi", "Mã của bạn: {voucher}"),
                        ("es-en", "Happy new year {name}"), ("et-en", "Your code: {voucher}")):
        browser.find_element(By.ID, field).send_keys(text)
    browser.find_element(By.ID, "preview").click()
    preview = wait.until(lambda d: d.find_element(By.ID, "preview-email-vi"))
    assert "Chúc mừng năm mới Lan" in preview.text and "K7QP-M4XR" in preview.text
    assert Automation.select().count() == 0
    browser.find_element(By.ID, "save").click()
    assert "Saved" in wait.until(lambda d: d.find_element(By.ID, "saved")).text
    auto = Automation.get()
    assert auto.kind == "campaign" and auto.name == "Tết" and auto.opts["voucher_days"] == 10
    browser.get(f"{live}/panel/activation")
    browser.find_element(By.ID, f"switch-{auto.uid}").click()
    # The switch posts and the page comes back: wait for the page that says so, not the one clicked
    # (found at once, still "Off", under load).
    wait.until(lambda d: d.find_element(By.ID, f"state-{auto.uid}").text == "On")
    assert Automation.get().enabled

    code = vouchers.display(vouchers.issue(person(rt.vault), auto, 10).code)
    for attempt in range(2):
        browser.find_element(By.LINK_TEXT, "Redeem a code").click()
        wait.until(lambda d: d.find_element(By.ID, "code")).send_keys(code.lower())
        browser.find_element(By.ID, "amount").send_keys("85000")
        browser.find_element(By.ID, "redeem").click()
        if attempt == 0:
            assert f"Code {code} redeemed" in wait.until(lambda d: d.find_element(By.ID, "redeemed")).text
        else:
            assert "already used, at" in wait.until(lambda d: d.find_element(By.ID, "till-error")).text
    browser.save_screenshot(str(tmp_path / "till.png"))
    assert Voucher.get().amount == 85000
