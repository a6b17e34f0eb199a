"""HTTPS sign-in: Debian's nginx in front of a real `footfall portal`, as deploy/install.sh sets it up.

A throwaway CA (trustme) signs the certificate of portal.test. The deploy script renders the site
(--root, so nothing on the host changes) with the guest address 127.0.0.2; nginx serves it there,
the portal listens on 127.0.0.1 with the same port number, and a real Chromium that trusts the CA
walks from a plain-http captive probe to the https splash and online.
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import socket
import ssl
from pathlib import Path
from urllib.parse import quote

import pytest

from portal.config import ConfigError, load_settings
from tests.e2e import nginx
from tests.livecheck import footfall_process

ROOT = Path(__file__).resolve().parents[2]
GUEST_IP = "127.0.0.2"       # where nginx listens, as on the guest interface
OUTSIDER_IP = "127.0.0.3"    # a client that is not in panel_networks
HOST = "portal.test"


class Stack:
    def __init__(self, http_port: int, https_port: int, ca, root: Path):
        self.http_port, self.https_port, self.ca, self.root = http_port, https_port, ca, root
        self.url = f"https://{HOST}:{https_port}"

    def tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH)
        ctx.load_verify_locations(cadata=self.ca.cert_pem.bytes().decode())
        return ctx

    def https(self, method: str, path: str, source: str = "127.0.0.1", headers: dict | None = None):
        """A request to nginx's https port, the certificate verified against the test CA for portal.test."""
        conn = _Pinned((GUEST_IP, self.https_port), source, HOST, self.https_port, self.tls_context())
        return _request(conn, method, path, headers)

    def http(self, path: str, host: str, source: str = "127.0.0.1", port: int | None = None,
             address: str = GUEST_IP, headers: dict | None = None):
        """A plain-http request (what the gateway redirects a guest's port 80 to)."""
        conn = http.client.HTTPConnection(address, port or self.http_port, timeout=10, source_address=(source, 0))
        return _request(conn, "GET", path, {"Host": host, **(headers or {})})


class _Pinned(http.client.HTTPSConnection):
    """HTTPS to a fixed address, with SNI, Host and certificate check for the portal's name."""

    def __init__(self, address, source, host, port, context):
        super().__init__(host, port, context=context, timeout=10)
        self._address, self._source = address, source

    def connect(self):
        sock = socket.create_connection(self._address, timeout=10, source_address=(self._source, 0))
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _request(conn, method, path, headers):
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.headers, body
    finally:
        conn.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    nginx.need_nginx()
    tmp = tmp_path_factory.mktemp("https")
    conf, http_port, https_port, ca = nginx.deploy_site(tmp, HOST, GUEST_IP, full_chain=True)
    root = tmp / "root"  # where install.sh --root wrote the deploy's files
    # The deploy's settings file as written, with a data directory and the null gateway of a test,
    # and a panel that answers 127.0.0.1 only (so a forged address would show).
    portal_env = {"FOOTFALL_DATA_DIR": str(tmp / "data"), "FOOTFALL_GATEWAY": "null",
                  "FOOTFALL_PANEL_NETWORKS": "127.0.0.1/32", "FOOTFALL_CONFIG": ""}
    with footfall_process(["portal", "--config", str(root / "etc/footfall/footfall.toml")], env=portal_env) as (_, port):
        assert port == http_port
        with nginx.running(conf, [(GUEST_IP, http_port), (GUEST_IP, https_port)]):
            yield Stack(http_port, https_port, ca, root)


@pytest.mark.parametrize("value", ["*", "localhost", "127.0.0.0/8", "127.0.0.1 "])
def test_trusted_proxy_is_one_exact_address(value, tmp_path):
    # waitress compares it with the peer's address as text; "*" would believe any guest's
    # X-Forwarded-For (and let it into the panel).
    with pytest.raises(ConfigError, match="trusted_proxy"):
        load_settings(environ={}, data_dir=str(tmp_path), trusted_proxy=value)
    assert load_settings(environ={}, data_dir=str(tmp_path), trusted_proxy="::1").trusted_proxy == "::1"


def test_the_deploy_settings_put_the_portal_behind_the_front(stack):
    toml = (stack.root / "etc/footfall/footfall.toml").read_text()
    for line in ('listen_host = "127.0.0.1"', f"listen_port = {stack.http_port}", f'portal_url = "{stack.url}"',
                 'trusted_proxy = "127.0.0.1"'):
        assert line in toml.splitlines(), line
    dnsmasq = (stack.root / "etc/dnsmasq.d/footfall.conf").read_text().splitlines()
    assert f"dhcp-option=114,{stack.url}/api/captive" in dnsmasq
    assert f"host-record={HOST},{GUEST_IP}" in dnsmasq


def test_a_plain_http_probe_is_redirected_to_the_https_splash(stack):
    status, headers, _, body = stack.http("/hotspot-detect.html", "captive.apple.com")
    assert status == 302 and body == b""
    assert headers["location"] == f"{stack.url}/?continue=" + quote("http://captive.apple.com/hotspot-detect.html", safe="")


def test_plain_http_to_the_portal_name_goes_to_https(stack):
    status, headers, _, _ = stack.http("/privacy?lang=en", f"{HOST}:{stack.http_port}")
    assert status == 301
    assert headers["location"] == f"{stack.url}/privacy?lang=en"


def test_the_rfc8908_api_answers_over_https_with_the_https_portal_url(stack):
    status, headers, _, body = stack.https("GET", "/api/captive")
    assert status == 200
    assert headers["content-type"] == "application/captive+json"
    assert json.loads(body) == {"captive": True, "user-portal-url": f"{stack.url}/",
                                "venue-info-url": f"{stack.url}/privacy"}


def test_the_session_cookie_is_secure(stack):
    status, _, message, _ = stack.https("GET", "/?form=1")
    assert status == 200
    cookies = [c for c in message.get_all("Set-Cookie") if c.startswith("ff_session=")]
    assert len(cookies) == 1
    attributes = {part.strip().split("=")[0].lower() for part in cookies[0].split(";")[1:]}
    assert {"secure", "httponly"} <= attributes
    # Referers stay on our own pages (flask-wtf needs them for a form POST over https).
    assert message["Referrer-Policy"] == "same-origin"


def test_the_portal_believes_forwarded_addresses_from_the_front_only(stack):
    # The front passes the real client: 127.0.0.1 is in panel_networks, 127.0.0.3 is not.
    assert stack.https("GET", "/panel/login")[0] == 200
    assert stack.https("GET", "/panel/login", source=OUTSIDER_IP)[0] == 404
    # A client's own X-Forwarded-For is replaced by the front, never appended to.
    forged = {"X-Forwarded-For": "127.0.0.1", "Forwarded": "for=127.0.0.1"}
    assert stack.https("GET", "/panel/login", source=OUTSIDER_IP, headers=forged)[0] == 404
    # Straight to the portal from anyone but the front: forwarded headers are ignored.
    direct = dict(port=stack.http_port, address="127.0.0.1", host=f"{HOST}:{stack.https_port}")
    assert stack.http("/panel/login", source=OUTSIDER_IP, headers=forged, **direct)[0] == 404
    # ...and from the front's address they are believed (so the check above is not vacuous).
    assert stack.http("/panel/login", source="127.0.0.1", headers={"X-Forwarded-For": OUTSIDER_IP}, **direct)[0] == 404
    assert stack.http("/panel/login", source="127.0.0.1", **direct)[0] == 200


def _spki_hash(ca) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.mark.browser
def test_chromium_signs_in_over_https_from_a_captive_probe(stack, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.e2e.chromium import chromium

    # The browser trusts the test CA (by its key) and resolves the two names to the "gateway".
    browser = chromium(tmp_path, f"--ignore-certificate-errors-spki-list={_spki_hash(stack.ca)}",
                       f"--host-resolver-rules=MAP {HOST} {GUEST_IP}, MAP captive.apple.com {GUEST_IP}",
                       "--disable-features=HttpsUpgrades")
    try:
        wait = WebDriverWait(browser, 10, ignored_exceptions=(StaleElementReferenceException, WebDriverException))
        browser.get(f"http://captive.apple.com:{stack.http_port}/hotspot-detect.html")
        wait.until(lambda d: d.current_url.startswith(f"{stack.url}/?continue="))
        assert browser.execute_script("return window.isSecureContext") is True
        assert browser.execute_script("return location.protocol") == "https:"
        cookie = browser.get_cookie("ff_session")
        assert cookie is not None and cookie["secure"] is True and cookie["httpOnly"] is True

        form = wait.until(lambda d: d.find_element(By.ID, "email"))
        form.send_keys("tls.visitor@example.com")
        browser.find_element(By.ID, "terms").click()
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "h1").text == "You are online")
        assert browser.current_url.startswith(f"{stack.url}/online")
        # The same browser's RFC 8908 answer now says it is online.
        browser.get(f"{stack.url}/api/captive")
        answer = json.loads(browser.find_element(By.TAG_NAME, "pre").text)
        assert answer["captive"] is False and answer["user-portal-url"] == f"{stack.url}/"
    except Exception:
        # What the browser showed, for whoever reads a failure (styles left out).
        page = re.sub(r"<style>.*</style>", "", browser.page_source, flags=re.S)
        print("page at failure:", browser.current_url, page[:6000])
        raise
    finally:
        browser.quit()
