"""Every panel page in a real headless Chromium, at phone (390x844) and laptop (1366x900) width, in
Vietnamese and English: nothing overflows sideways, no chart label runs out of its chart or over
another, and no visible text is a raw name (a setting, an audit action, an i18n key: anything in
snake_case). Also: the phone's folded menu opens, an analyst gets the panel's own 403 page naming
the role needed, a rejected setting says its range, and dates read dd/mm/yyyy in Vietnamese.

One browser and one small store (40 people, 400 visits) served in-process; the page size changes
through DevTools' device metrics, not a new browser. Screenshots (what the screen shows; whole
pages with FOOTFALL_WHOLE_SCREENSHOTS=1) go to tests/artifacts/panel-pages/.
"""
from __future__ import annotations

import dataclasses
import os
import re
import threading

import pytest

from tests.e2e.chromium import chromium
from tests.e2e.test_browser import ARTIFACTS
from tests.messages.providers import free_port

pytestmark = pytest.mark.browser

PASSWORD = "browser pages password 1"
# Whole-page screenshots cost about half the test's time: FOOTFALL_WHOLE_SCREENSHOTS=1 to review them.
WHOLE_PAGES = os.environ.get("FOOTFALL_WHOLE_SCREENSHOTS") == "1"
SIZES = {"phone": (390, 844, True), "laptop": (1366, 900, False)}
PAGES = {"dashboard": "/panel/", "leads": "/panel/leads", "lead": None, "segments": "/panel/segments",
         "privacy": "/panel/privacy", "removals": "/panel/privacy/removals", "audit": "/panel/audit",
         "users": "/panel/users", "settings": "/panel/settings", "compliance": "/panel/compliance",
         "health": "/panel/health", "setup_2fa": "/panel/2fa", "refused": "/panel/segments/loyal/export/meta",
         "account": "/panel/account", "webhooks": "/panel/webhooks", "splash": "/panel/splash",
         "activation": "/panel/activation", "automation": "/panel/activation/new", "till": "/panel/till",
         "sign": "/panel/sign"}
# Raw names a page may show on purpose: none but the settings-file name the compliance page tells the owner to set.
ALLOWED_RAW = {"dpo_contact"}
SNAKE = re.compile(r"(?<![\w@./-])[a-z][a-z0-9]*(?:[_.][a-z0-9]+)*_[a-z0-9]+(?:[_.][a-z0-9]+)*(?![\w@-])")

CHECK = """
// A <pre> is a document shown as it is downloaded (the record of processing), a <code> a technical
// name shown on purpose beside its words (an event type a CRM receives, a MAC address): not the interface.
const pres = [...document.querySelectorAll('pre, code')];
pres.forEach(p => p.hidden = true);
const text = document.body.innerText;
pres.forEach(p => p.hidden = false);
const out = {overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth, text: text, labels: []};
for (const svg of document.querySelectorAll('svg[viewBox]')) {
  const vb = svg.viewBox.baseVal;
  const boxes = [...svg.querySelectorAll('text')].map(t => ({b: t.getBBox(), s: t.textContent}));
  for (const {b, s} of boxes) {
    if (b.x < -0.5 || b.x + b.width > vb.width + 0.5) out.labels.push('outside: ' + s);
  }
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const a = boxes[i].b, c = boxes[j].b;
    if (a.x < c.x + c.width - 0.5 && c.x < a.x + a.width - 0.5 && a.y < c.y + c.height - 0.5 && c.y < a.y + a.height - 0.5)
      out.labels.push('overlap: ' + boxes[i].s + ' / ' + boxes[j].s);
  }
}
return out;
"""


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A small store served in-process on a loopback port: owner1 and analyst1, every audit action once."""
    from argon2 import PasswordHasher
    from werkzeug.serving import make_server

    from portal import accounts, create_app, passwords, privacy, segments
    from portal.config import load_settings
    from portal.db import database
    from portal.gateway.null import NullGateway
    from portal.models import AuditLog, utcnow
    from tests.perf.seed import seed
    from tests.test_i18n_catalogs import audit_actions

    monkeypatch.setattr(passwords, "HASHER", passwords.BoundedHasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)))
    port = free_port()
    settings = load_settings(environ={}, data_dir=str(tmp_path / "data"), portal_url=f"http://127.0.0.1:{port}",
                             store_name="Cà Phê Test", log_level="WARNING")
    app = create_app(dataclasses.replace(settings, panel_require_2fa=False), gateway=NullGateway())
    rt = app.extensions["footfall"]
    with database.connection_context():
        seed(rt.vault, 40, 60, 400, days=30)
        segments.recompute()
        for role in ("owner", "analyst"):
            accounts.create_manager(f"{role}1", PASSWORD, role)
        for action in sorted(audit_actions()):
            AuditLog.record("manager:owner1", action, "wifi_terms/vi" if action == "policy_published" else None,
                            "127.0.0.1", purposes=["marketing_email"], role="analyst", leads=1234)
        privacy.open_request("deletion", utcnow(), privacy.rules_from(rt.settings), rt.vault, "manager:owner1",
                             requester="Lan, by phone")
    database.close()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(5)
        database.close()


@pytest.fixture
def browser(tmp_path):
    driver = chromium(tmp_path, "--window-size=1366,900", "--hide-scrollbars")
    try:
        yield driver
    finally:
        driver.quit()


def test_every_panel_page_fits_a_phone_and_a_laptop_in_both_languages(store, browser):
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 15, ignored_exceptions=(StaleElementReferenceException, WebDriverException))
    shots = ARTIFACTS / "panel-pages"
    shots.mkdir(parents=True, exist_ok=True)

    def size(name):
        width, height, mobile = SIZES[name]
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})

    def open_(path):
        browser.get(store + path)
        wait.until(lambda d: d.find_elements(By.TAG_NAME, "main"))

    def sign_in(username):
        open_("/panel/login")
        browser.find_element(By.ID, "username").send_keys(username)
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "main button[type=submit]").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "header nav"))

    from tests.test_i18n_catalogs import audit_actions
    actions = audit_actions()
    size("laptop")
    open_("/panel/login?lang=vi")
    sign_in("owner1")
    open_("/panel/leads")
    PAGES["lead"] = browser.find_element(By.CSS_SELECTOR, "#leads a").get_attribute("href").removeprefix(store)
    problems = []
    for lang in ("vi", "en"):
        open_(f"/panel/?lang={lang}")
        for size_name in SIZES:
            size(size_name)
            for page, path in PAGES.items():
                open_(path)
                if page != "sign":  # the entrance sign is printed in every language at once
                    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == lang, (page, lang)
                found = browser.execute_script(CHECK)
                where = f"{lang} {size_name} {page}"
                if found["overflow"] > 0:
                    problems.append(f"{where}: {found['overflow']} px wider than the screen")
                problems += [f"{where}: chart label {label}" for label in found["labels"]]
                raw = set(SNAKE.findall(found["text"])) - ALLOWED_RAW
                if raw:
                    problems.append(f"{where}: raw names shown: {sorted(raw)}")
                shot(browser, shots / f"{lang}-{size_name}-{page}.jpg", whole=WHOLE_PAGES)
            if size_name == "laptop":
                # Actions without an underscore (login, erase, export) are raw names too.
                open_("/panel/audit")
                cells = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#audit tr td:nth-child(3)")]
                assert len(cells) > 40 and not set(cells) & actions, set(cells) & actions
                if lang == "vi":
                    text = browser.find_element(By.ID, "audit").text
                    assert re.search(r"\b\d{2}/\d{2}/\d{4}\b", text), "dates read dd/mm/yyyy in Vietnamese"
                    assert "đăng nhập" in text and "1.234" in text  # an action and a number in words and in vi format
    assert problems == [], "\n".join(problems)

    # On a phone the menu is folded behind a button, and opens without a script.
    size("phone")
    open_("/panel/?lang=vi")
    link = browser.find_element(By.CSS_SELECTOR, "header nav a[href$='/panel/settings']")
    assert not link.is_displayed()
    browser.find_element(By.CSS_SELECTOR, "header label.menu").click()
    wait.until(lambda d: link.is_displayed())
    assert browser.execute_script("return document.scripts.length") == 0

    # A rejected setting says its allowed range.
    size("laptop")
    open_("/panel/settings")
    field = browser.find_element(By.ID, "visit_gap_minutes")
    field.clear()
    field.send_keys("999")
    field.find_element(By.XPATH, "./ancestor::form//button[@type='submit']").click()  # the whole form, every text in it
    alert = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "p.alert"))
    assert "từ 1 đến 240" in alert.text and "visit_gap" not in alert.text

    # Signed out: the sign-in page, in both languages and sizes too.
    browser.find_element(By.CSS_SELECTOR, "header form button[type=submit]").click()
    wait.until(lambda d: d.find_elements(By.ID, "username"))
    for lang in ("en", "vi"):
        for size_name in SIZES:
            size(size_name)
            for page, path in (("login", f"/panel/login?lang={lang}"), ("forgot", "/panel/login/forgot")):
                open_(path)
                found = browser.execute_script(CHECK)
                assert found["overflow"] <= 0 and not SNAKE.findall(found["text"]), (lang, size_name, page)
                shot(browser, shots / f"{lang}-{size_name}-{page}.jpg")

    # An analyst opening a manager's page gets the panel's 403 page, naming the roles it is for.
    sign_in("analyst1")
    open_("/panel/leads")
    page = browser.find_element(By.ID, "forbidden").text
    assert "chủ cửa hàng" in page and "quản lý" in page and "người phân tích" in page
    assert browser.find_elements(By.CSS_SELECTOR, "header nav")  # inside the panel, not the guests' error page
    shot(browser, shots / "vi-laptop-forbidden.jpg")


def shot(browser, path, whole: bool = False) -> None:
    """What the screen shows, or the whole page (a phone's long column; the checks cover every page whole)."""
    import base64
    options = {"format": "jpeg", "quality": 70}
    if whole:
        width, height = browser.execute_script(
            "return [document.documentElement.clientWidth, document.documentElement.scrollHeight]")
        options.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": width, "height": min(height, 5000), "scale": 1})
    image = browser.execute_cdp_cmd("Page.captureScreenshot", options)
    path.write_bytes(base64.b64decode(image["data"]))
