"""A real headless Chromium signs in to the panel and looks at 30 days of a store."""
from __future__ import annotations

import os
import sys

import pytest

from tests.e2e.chromium import chromium
from tests.e2e.test_browser import ARTIFACTS
from tests.livecheck import footfall_process

pytestmark = pytest.mark.browser
SEED = r'''
import sys
sys.path.insert(0, sys.argv[2])
from portal import create_app, segments
from portal.config import load_settings
from portal.db import database
from tests.perf.seed import seed
app = create_app(load_settings(environ={}, data_dir=sys.argv[1], log_level="WARNING"))
with database.connection_context():
    seed(app.extensions["footfall"].vault, 300, 500, 4000, days=30)
    segments.recompute()
'''


@pytest.fixture
def browser(tmp_path):
    driver = chromium(tmp_path, "--window-size=1280,1600")
    try:
        yield driver
    finally:
        driver.quit()


def test_owner_signs_in_and_sees_the_dashboard_and_a_lead(browser, tmp_path):
    import subprocess

    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    data = tmp_path / "demo"
    subprocess.run([sys.executable, "-c", SEED, str(data), root], check=True, capture_output=True, timeout=300)
    wait = WebDriverWait(browser, 15, ignored_exceptions=(StaleElementReferenceException, WebDriverException))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with footfall_process(["demo", "--port", "0", "--data-dir", str(data)]) as (proc, port):
        base = f"http://127.0.0.1:{port}"
        # The seeded store has no account yet, so the demo created the owner and printed it.
        browser.get(f"{base}/panel/login")
        assert browser.find_element(By.TAG_NAME, "h1").text.endswith("Store panel")
        password = _demo_password(data)
        browser.find_element(By.ID, "username").send_keys("owner")
        browser.find_element(By.ID, "password").send_keys(password)
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: d.find_elements(By.ID, "kpi-today"))
        assert int(browser.find_element(By.ID, "kpi-today").text) >= 0
        assert len(browser.find_elements(By.CSS_SELECTOR, "svg rect")) > 100  # charts drawn on the server
        assert browser.execute_script("return document.scripts.length") == 0
        browser.save_screenshot(str(ARTIFACTS / "panel-dashboard.png"))

        browser.get(f"{base}/panel/leads?segment=loyal")
        first = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#leads a"))  # the person, by name
        email = first.find_element(By.XPATH, "./ancestor::tr/td[2]").text.split()[0]
        assert "@" in email and first.text != email
        first.click()
        wait.until(lambda d: d.find_elements(By.ID, "lead-email"))
        assert browser.find_element(By.ID, "lead-email").text == email
        assert "min" in browser.find_element(By.TAG_NAME, "main").text  # a loyal visitor has visits listed
        browser.save_screenshot(str(ARTIFACTS / "panel-lead.png"))
    assert (ARTIFACTS / "panel-dashboard.png").stat().st_size > 20_000


def _demo_password(data) -> str:
    """Reset the owner's password to a known one (the demo printed a random one to its output)."""
    import subprocess
    secret = "browser test password 1"
    subprocess.run([sys.executable, "-m", "portal", "manager", "reset-password", "owner", "--password-stdin"],
                   input=secret + "\n", text=True, check=True, capture_output=True,
                   env={**os.environ, "FOOTFALL_DATA_DIR": str(data)})
    return secret
