"""Every request for a foreign Host is a captive probe: redirected until the device signs in."""
import json
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import PORTAL_HOST

PROBES = [
    ("captive.apple.com", "/hotspot-detect.html"),
    ("www.apple.com", "/library/test/success.html"),
    ("connectivitycheck.gstatic.com", "/generate_204"),
    ("clients3.google.com", "/generate_204"),
    ("connectivitycheck.android.com", "/generate_204"),
    ("www.google.com", "/gen_204"),
    ("connect.rom.miui.com", "/generate_204"),
    ("connectivitycheck.platform.hicloud.com", "/generate_204"),
    ("www.msftconnecttest.com", "/connecttest.txt"),
    ("www.msftncsi.com", "/ncsi.txt"),
    ("detectportal.firefox.com", "/success.txt"),
    ("detectportal.firefox.com", "/canonical.html"),
    ("nmcheck.gnome.org", "/check_network_status.txt"),
    ("network-test.debian.org", "/nm"),
    ("example.com", "/"),
    ("vnexpress.net", "/the-gioi/some-article-123.html?utm_source=x&a=1"),
    ("192.0.2.1", "/"),
    ("news.example.org:8080", "/path with space"),
]


@pytest.mark.parametrize("host,path", PROBES)
def test_unauthorized_probe_is_redirected_to_splash_with_its_url(client, host, path):
    response = client.get(path, headers={"Host": host})
    assert response.status_code == 302
    assert response.get_data() == b""
    assert response.headers["Cache-Control"] == "no-store"
    location = urlsplit(response.headers["Location"])
    assert (location.scheme, location.netloc, location.path) == ("http", PORTAL_HOST, "/")
    carried = parse_qs(location.query)["continue"][0]
    assert carried.startswith(f"http://{host}/")


@pytest.mark.parametrize("method", ["POST", "HEAD", "PUT", "OPTIONS"])
def test_any_method_on_a_foreign_host_is_a_probe(client, method):
    response = client.raw.open("/generate_204", method=method,
                               headers={"Host": "connectivitycheck.gstatic.com"}, environ_base={"REMOTE_ADDR": "10.0.0.10"})
    assert response.status_code == 302


@pytest.mark.parametrize("host", ["", "bad host", "<script>", "a" * 300, "exa\u00e9mple.com"])
def test_odd_hosts_are_redirected_without_a_continue_url(client, host):
    response = client.get("/generate_204", headers={"Host": host})
    assert response.status_code == 302
    assert "continue" not in response.headers["Location"]


def test_very_long_urls_are_cut_to_the_host(client):
    response = client.get("/" + "a" * 3000, headers={"Host": "example.com"})
    carried = parse_qs(urlsplit(response.headers["Location"]).query)["continue"][0]
    assert carried == "http://example.com/"


ONLINE = [
    ("connectivitycheck.gstatic.com", "/generate_204", 204, b""),
    ("captive.apple.com", "/hotspot-detect.html", 200, b"<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"),
    ("www.msftconnecttest.com", "/connecttest.txt", 200, b"Microsoft Connect Test"),
    ("detectportal.firefox.com", "/success.txt", 200, b"success\n"),
]


@pytest.mark.parametrize("host,path,status,body", ONLINE)
def test_after_sign_in_probes_get_the_online_answer(client, host, path, status, body):
    assert client.get(path, headers={"Host": host}).status_code == 302
    assert client.sign_in().status_code == 303
    response = client.get(path, headers={"Host": host})
    assert (response.status_code, response.get_data()) == (status, body)


def test_signed_in_ordinary_site_goes_to_the_online_page(client):
    client.sign_in()
    response = client.get("/news", headers={"Host": "example.com"})
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/online"


def test_other_devices_stay_captive(client, make_client):
    client.sign_in()
    other = make_client("10.0.0.99")
    assert other.get("/generate_204", headers={"Host": "connectivitycheck.gstatic.com"}).status_code == 302


def test_rfc8908_api(client):
    response = client.get("/api/captive")
    assert response.mimetype == "application/captive+json"
    body = json.loads(response.get_data())
    assert body["captive"] is True and body["user-portal-url"] == f"http://{PORTAL_HOST}/"
    assert "seconds-remaining" not in body
    client.sign_in()
    body = json.loads(client.get("/api/captive").get_data())
    assert body["captive"] is False
    assert 14400 - 5 <= body["seconds-remaining"] <= 14400
