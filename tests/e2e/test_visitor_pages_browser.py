"""Issue 16 in a real headless Chromium: every visitor page at 320, 390 and 430 px wide, in
Vietnamese and English, never wider than the phone (scrollWidth <= clientWidth), and the sign-in
form's Connect button within one and a half screens at 390x844 with every default purpose shown.

One `footfall portal` (null gateway, email codes printed) and one browser for the module; each
page is loaded once per language and resized to each width (Emulation.setDeviceMetricsOverride),
so the module stays within a few seconds. Screenshots go to the module's tmp dir (pytest -s
prints their paths).
"""
from __future__ import annotations

import base64
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.chromium import chromium
from tests.livecheck import footfall_process
from tests.messages.providers import free_port

pytestmark = pytest.mark.browser

WIDTHS = (320, 390, 430)
HEIGHT = 844
LANGS = ("vi", "en")
PHONE_UA = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0.0.0 Mobile Safari/537.36")
# Long words are what overflow a phone: a long store name, address and link label.
STORE = "Cà Phê Sữa Đá Ngon Nhất Phố Hàng Bạc"
EMAIL = "nguyen.van.an.khach.hang.than.thiet@example-cafe-hanoi.com.vn"
PROBE = "http://connectivitycheck.gstatic.com/generate_204"
OWNER_PASSWORD = "cafe moc sign-in page 2026"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A portal set up as a Vietnamese café owner would (headline, offer, link; phone first)."""
    tmp = tmp_path_factory.mktemp("visitor-pages")
    port = free_port()
    env = {"FOOTFALL_DATA_DIR": str(tmp / "data"), "FOOTFALL_LISTEN_HOST": "127.0.0.1",
           "FOOTFALL_LISTEN_PORT": str(port), "FOOTFALL_PORTAL_URL": f"http://127.0.0.1:{port}",
           "FOOTFALL_GATEWAY": "null", "FOOTFALL_LOG_LEVEL": "WARNING", "FOOTFALL_STORE_NAME": STORE,
           "FOOTFALL_EMAIL_DRIVER": "console", "FOOTFALL_SMS_DRIVER": "none", "FOOTFALL_ZALO_DRIVER": "none",
           "FOOTFALL_DB_LOCK_WAIT_MS": "300", "FOOTFALL_RATE_LIMIT_COUNT": "50", "FOOTFALL_PANEL_REQUIRE_2FA": "false",
           "FOOTFALL_SPLASH_HEADLINE_VI": "Chào mừng tới quán, WiFi miễn phí cho mọi khách",
           "FOOTFALL_SPLASH_OFFER_VI": "Giảm 10% cho ly thứ hai khi bạn để lại số điện thoại",
           "FOOTFALL_SPLASH_OFFER_EN": "10% off your second cup when you leave your phone number",
           "FOOTFALL_SPLASH_LINK": "https://example.com/thuc-don/mua-dong-2026?utm_source=wifi&utm_medium=captive",
           "FOOTFALL_SPLASH_LINK_LABEL_VI": "Xem thực đơn mùa đông của quán"}
    with footfall_process(["portal"], env) as (_, port):
        subprocess.run([sys.executable, "-m", "portal", "manager", "add", "owner", "--role", "owner", "--password-stdin"],
                       input=OWNER_PASSWORD + "\n", text=True, check=True, capture_output=True, timeout=60,
                       env={**os.environ, **env})
        yield {"base": f"http://127.0.0.1:{port}", "db": tmp / "data" / "footfall.db", "shots": tmp}


@pytest.fixture(scope="module")
def browser(tmp_path_factory, site):
    driver = chromium(tmp_path_factory.mktemp("chromium"),
                      mobile={"deviceMetrics": {"width": 390, "height": HEIGHT, "pixelRatio": 1.0}, "userAgent": PHONE_UA})
    try:
        yield driver
    finally:
        driver.quit()


def wait(browser):
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(browser, 10, ignored_exceptions=(StaleElementReferenceException, WebDriverException))


def resize(browser, width: int) -> None:
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": True})


def widths_of(browser) -> dict:
    return browser.execute_script(
        "const e = document.documentElement, b = document.body;"
        "const wide = [...document.querySelectorAll('body *')].filter(x => x.getBoundingClientRect().right > e.clientWidth + 0.5)"
        "  .slice(0, 5).map(x => x.tagName + (x.id ? '#' + x.id : '') + '.' + x.className + ' ' + Math.round(x.getBoundingClientRect().right));"
        "return {scroll: e.scrollWidth, client: e.clientWidth, body: b.scrollWidth, inner: window.innerWidth, wide: wide};")


def check_every_width(browser, site, page: str, lang: str) -> None:
    """At each width: nothing wider than the screen; a screenshot of each."""
    for width in WIDTHS:
        resize(browser, width)
        w = widths_of(browser)
        assert w["client"] == width, f"{page}/{lang}: the viewport is {w['client']} px, not {width}"
        assert w["scroll"] <= w["client"] and w["body"] <= w["client"], (
            f"{page} ({lang}) overflows at {width} px: page {w['scroll']} px wide; too wide: {w['wide']}")
        path = Path(site["shots"]) / f"{page}-{lang}-{width}.png"
        browser.save_screenshot(str(path))
        assert path.stat().st_size > 5_000, f"{path} looks empty"
        print(f"screenshot: {path}")
    resize(browser, 390)


def submit(browser, button: str) -> None:
    """Click a form's button and wait for the next page's "saved" line (not the one on this page)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.expected_conditions import staleness_of
    old = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.CSS_SELECTOR, button).click()
    wait(browser).until(staleness_of(old))
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "p.ok[role=status]"))


def h1(browser) -> str:
    from selenium.webdriver.common.by import By
    return browser.find_element(By.TAG_NAME, "h1").text


def test_every_visitor_page_fits_every_phone_in_both_languages(browser, site):
    from selenium.webdriver.common.by import By
    base = site["base"]
    for lang in LANGS:
        # The sign-in page, as the probe's redirect opens it.
        browser.get(f"{base}/?lang={lang}&continue=" + PROBE.replace(":", "%3A").replace("/", "%2F"))
        expected = "Chào mừng tới quán, WiFi miễn phí cho mọi khách" if lang == "vi" else "Free WiFi"
        assert h1(browser) == expected
        check_every_width(browser, site, "splash", lang)
        resize(browser, 390)
        boxes = browser.find_elements(By.CSS_SELECTOR, "form input[type=checkbox]")
        assert [b.get_attribute("id") for b in boxes] == ["terms", "age", "marketing_email", "marketing_sms",
                                                          "ad_audiences", "visit_analytics", "chain_sharing"]
        fields = [e.get_attribute("id") for e in browser.find_elements(By.CSS_SELECTOR, "form input[type=tel], form input[type=email]")]
        assert fields == ["phone", "email"], "phone first, as the store chose by default"
        bottom = browser.execute_script("const r = document.getElementById('connect').getBoundingClientRect();"
                                        "return r.bottom + window.scrollY;")
        print(f"connect button bottom at 390x844 ({lang}): {bottom:.0f} px (limit {1.5 * HEIGHT:.0f})")
        assert bottom <= 1.5 * HEIGHT, f"Connect ends at {bottom:.0f} px at 390x844 ({lang}): more than 1.5 screens"
        terms = browser.find_element(By.CSS_SELECTOR, "label[for=terms], #terms + span")
        assert terms.find_element(By.TAG_NAME, "a").get_attribute("href") == f"{base}/privacy"

        browser.get(f"{base}/privacy")
        check_every_width(browser, site, "notice", lang)
        browser.get(f"{base}/no-such-page")
        assert browser.find_element(By.CSS_SELECTOR, "p.card[role=alert]")
        check_every_width(browser, site, "error-404", lang)

    # The 503 "busy" page: the form sent while another writer holds the database past db_lock_wait_ms.
    for lang, message in (("vi", "Đang có nhiều người đăng nhập cùng lúc."), ("en", "Many people are signing in right now.")):
        browser.get(f"{base}/?lang={lang}")
        browser.find_element(By.ID, "email").send_keys(EMAIL)
        browser.find_element(By.ID, "terms").click()
        lock = sqlite3.connect(site["db"], timeout=5, isolation_level=None)
        try:
            lock.execute("BEGIN IMMEDIATE")
            browser.find_element(By.ID, "connect").click()
            wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "p.card[role=alert]"))
            assert message in browser.find_element(By.CSS_SELECTOR, "p.card[role=alert]").text
            check_every_width(browser, site, "busy-503", lang)
        finally:
            lock.execute("ROLLBACK")
            lock.close()

    # Signed in for real: the "online" page with its code card, the code page and "my data".
    browser.get(f"{base}/?lang=vi&continue=" + PROBE.replace(":", "%3A").replace("/", "%2F"))
    browser.find_element(By.ID, "email").send_keys(EMAIL)
    browser.find_element(By.ID, "terms").click()
    browser.find_element(By.ID, "connect").click()
    wait(browser).until(lambda d: h1(d) == "Bạn đã kết nối")
    for lang in LANGS:
        browser.get(f"{base}/online?lang={lang}&continue=" + PROBE.replace(":", "%3A").replace("/", "%2F"))
        until = browser.find_element(By.ID, "until").text
        assert until.startswith("Bạn được truy cập Internet đến " if lang == "vi" else "You are online until ")
        assert "gstatic" not in browser.find_element(By.TAG_NAME, "main").text, "the probe URL is never shown"
        link = browser.find_element(By.ID, "store-link")
        assert link.text == ("Xem thực đơn mùa đông của quán" if lang == "vi" else "See our page")
        assert browser.find_elements(By.CSS_SELECTOR, ".card.verify input[name=code]"), "the code form shows"
        check_every_width(browser, site, "online", lang)
        browser.get(f"{base}/verify")
        assert browser.find_elements(By.CSS_SELECTOR, ".card.verify input[name=code]")
        check_every_width(browser, site, "verify", lang)
        browser.get(f"{base}/my-data")
        check_every_width(browser, site, "my-data", lang)


def test_the_owner_edits_the_sign_in_page_and_previews_it_at_phone_size(browser, site, tmp_path):
    """The editor's iframe shows the real page (sandboxed, framed only by the panel), updated on save."""
    from selenium.webdriver.common.by import By
    base = site["base"]
    try:
        browser.get(f"{base}/panel/login?lang=en")
        browser.find_element(By.ID, "username").send_keys("owner")
        browser.find_element(By.ID, "password").send_keys(OWNER_PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait(browser).until(lambda d: "/panel/login" not in d.current_url)
        browser.get(f"{base}/panel/splash")
        headline = browser.find_element(By.ID, "splash_headline_en")
        headline.clear()
        headline.send_keys("Welcome to Moc <b>Coffee</b>")
        submit(browser, "form[action$='/panel/splash'] button[type=submit]")
        picture = tmp_path / "shop.jpg"  # a real JPEG, drawn by the browser itself
        picture.write_bytes(base64.b64decode(browser.execute_script(
            "const c = document.createElement('canvas'); c.width = 960; c.height = 320;"
            "const x = c.getContext('2d'); x.fillStyle = '#6b4226'; x.fillRect(0, 0, 960, 320);"
            "x.fillStyle = '#f4e1c1'; x.beginPath(); x.arc(480, 160, 110, 0, 7); x.fill();"
            "return c.toDataURL('image/jpeg', 0.8).split(',')[1];")))
        browser.find_element(By.ID, "picture").send_keys(str(picture))
        submit(browser, "form[action$='/panel/splash/picture'] button[type=submit]")
        resize(browser, 1280)  # a laptop's width (chromedriver's phone metrics come back with each page)
        frame = browser.find_element(By.ID, "preview-en")
        assert browser.execute_script("const f = arguments[0]; return [f.clientWidth, f.clientHeight];", frame) == [390, 844]
        browser.switch_to.frame(frame)
        try:
            assert h1(browser) == "Welcome to Moc <b>Coffee</b>"  # shown as typed, never as markup
            assert browser.find_element(By.CSS_SELECTOR, "img.picture").get_property("naturalWidth") == 960
            assert browser.find_element(By.ID, "connect").is_displayed()
            fold = browser.execute_script("return document.getElementById('fold').getBoundingClientRect().top + window.scrollY")
            assert fold == 1.5 * HEIGHT, "the preview marks one and a half screens"
        finally:
            browser.switch_to.default_content()
        for lang in LANGS:  # a figure for the report: the owner's picture costs height; the line shows it
            browser.switch_to.frame(browser.find_element(By.ID, f"preview-{lang}"))
            try:
                bottom = browser.execute_script("const r = document.getElementById('connect').getBoundingClientRect();"
                                                "return r.bottom + window.scrollY;")
                print(f"with a picture, Connect ends at {bottom:.0f} px ({lang}; the line at {1.5 * HEIGHT:.0f})")
            finally:
                browser.switch_to.default_content()
        path = Path(site["shots"]) / "panel-splash-editor.png"
        browser.save_screenshot(str(path))
        print(f"screenshot: {path}")
    finally:
        resize(browser, 390)
