"""Run inside the client namespace: a real headless Chromium opens a site, lands on the splash,
signs in, and reaches the site. Prints one JSON object.   python browser_in_ns.py SHOT_DIR"""
import json
import sys
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

shots = Path(sys.argv[1])
options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--lang=en-US", "--window-size=390,844", f"--user-data-dir={tempfile.mkdtemp()}"):
    options.add_argument(flag)
options.add_experimental_option("prefs", {"intl.accept_languages": "en-US,en"})
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
driver.set_page_load_timeout(20)
wait = WebDriverWait(driver, 15, ignored_exceptions=(StaleElementReferenceException, WebDriverException))
out = {}
try:
    driver.get("http://example.com/news")
    wait.until(lambda d: d.find_elements(By.ID, "email"))
    out["captive_url"] = driver.current_url
    driver.save_screenshot(str(shots / "netns-splash.png"))
    driver.find_element(By.ID, "email").send_keys("real.browser@example.com")
    driver.find_element(By.ID, "terms").click()
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: "/online" in d.current_url)
    out["after_submit"] = driver.current_url
    out["continue_link"] = driver.find_element(By.CSS_SELECTOR, "a.button").get_attribute("href")
    driver.get("http://example.com/news")
    out["site_text"] = driver.find_element(By.TAG_NAME, "body").text
    driver.save_screenshot(str(shots / "netns-online.png"))
finally:
    driver.quit()
print(json.dumps(out))
