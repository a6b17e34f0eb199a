"""openNDS FAS (level 1): the fas parameter, the token, and the visitor flow through Flask."""
import base64
import hashlib
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from portal import create_app
from portal.config import load_settings
from portal.db import database
from portal.gateway.opennds import InvalidFas, auth_token, parse_fas
from portal.models import Authorization, Consent, Device
from tests.conftest import PORTAL_HOST, PortalClient

# Captured from openNDS 9.10 (Debian) in a test namespace.
CAPTURED = ("aGlkPWRjNWE2NGMxZDQxY2U3MGFlNGZjMTQyYTM5YzM1M2Y3MjcwMjBjYjg1OGY2ZTg0ODQyNGMwOTBjMzAwNGI4ZjcsIGNsaWVudGlwPTEw"
            "Ljc3LjAuMTE0LCBjbGllbnRtYWM9MDI6MTE6MjI6MzM6NDQ6NTUsIGNsaWVudF90eXBlPWNwZF9jYW4sIGdhdGV3YXluYW1lPWZvb3RmYWxs"
            "dGVzdCUyME5vZGUlM2E0ZWQyMzFhMzA0MWIlMjAsIGdhdGV3YXl1cmw9aHR0cCUzYSUyZiUyZnN0YXR1cy5jbGllbnQsIHZlcnNpb249OS4x"
            "MC4wLCBnYXRld2F5YWRkcmVzcz0xMC43Ny4wLjE6MjA1MCwgZ2F0ZXdheW1hYz00ZWQyMzFhMzA0MWIsIG9yaWdpbnVybD1odHRwJTNhJTJm"
            "JTJmY2FwdGl2ZS5hcHBsZS5jb20lMmZob3RzcG90LWRldGVjdC5odG1sLCBjbGllbnRpZj1ndWVzdDAsIHRoZW1lc3BlYz0obnVsbCksIChu"
            "dWxsKShudWxsKShudWxsKShudWxsKQ==")
HID = "dc5a64c1d41ce70ae4fc142a39c353f727020cb858f6e848424c090c3004b8f7"
FASKEY = "1234567890abcdef"


def fas_of(**fields):
    base = {"hid": HID, "clientip": "10.77.0.114", "clientmac": "02:11:22:33:44:55", "gatewayaddress": "10.77.0.1:2050",
            "originurl": quote("http://example.com/", safe="")}
    base.update(fields)
    text = ", ".join(f"{k}={v}" for k, v in base.items())
    return base64.b64encode(text.encode()).decode()


def test_parses_what_opennds_sends():
    fas = parse_fas(CAPTURED)
    assert (fas.hid, fas.clientip, fas.clientmac, fas.gatewayaddress, fas.authdir) == (
        HID, "10.77.0.114", "02:11:22:33:44:55", "10.77.0.1:2050", "opennds_auth")
    assert fas.originurl == "http://captive.apple.com/hotspot-detect.html"
    assert fas.client_type == "cpd_can"


def test_token_is_sha256_of_hid_and_faskey():
    assert auth_token(HID, FASKEY) == hashlib.sha256((HID + FASKEY).encode()).hexdigest()


@pytest.mark.parametrize("value", [
    None, "", "%%%", "not base64!", base64.b64encode(b"\xff\xfe").decode(), "A" * 5000,
    fas_of(hid="short"), fas_of(hid="g" * 64), fas_of(clientmac="zz:11:22:33:44:55"), fas_of(clientip="10.77.0"),
    fas_of(gatewayaddress="evil.example:80"), fas_of(gatewayaddress="8.8.8.8:2050"),
    fas_of(gatewayaddress="10.77.0.1"), fas_of(authdir="../../x"),
])
def test_malformed_or_foreign_fas_is_refused(value):
    with pytest.raises(InvalidFas):
        parse_fas(value)


def test_gateway_allowlist():
    assert parse_fas(fas_of(), frozenset({"10.77.0.1:2050"})).gatewayaddress == "10.77.0.1:2050"
    with pytest.raises(InvalidFas):
        parse_fas(fas_of(), frozenset({"10.99.0.1:2050"}))


def test_unsafe_originurl_is_dropped_not_offered():
    assert parse_fas(fas_of(originurl=quote("javascript:alert(1)", safe=""))).originurl is None


@pytest.fixture
def fas_app(tmp_path):
    settings = load_settings(environ={}, data_dir=str(tmp_path / "data"), portal_url=f"http://{PORTAL_HOST}",
                             gateway="opennds", opennds_faskey=FASKEY)
    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    database.close()


def test_fas_visitor_signs_in_and_is_sent_to_opennds(fas_app):
    client = PortalClient(fas_app.test_client(), ip="10.77.0.114")
    page = client.get("/fas/", query_string={"fas": CAPTURED}, headers={"Accept-Language": "en"})
    assert page.status_code == 200 and "Free WiFi" in page.get_data(as_text=True)
    token = client.token("/?form=1")
    response = client.post("/connect", data={"csrf_token": token, "email": "fas@example.com", "terms": "yes",
                                             "continue": "http://captive.apple.com/hotspot-detect.html"})
    assert response.status_code == 303
    target = urlsplit(response.headers["Location"])
    assert (target.scheme, target.netloc, target.path) == ("http", "10.77.0.1:2050", "/opennds_auth/")
    query = parse_qs(target.query)
    assert query["tok"] == [auth_token(HID, FASKEY)]
    assert query["redir"][0].startswith(f"http://{PORTAL_HOST}/online?continue=http")
    assert Device.get().mac == "02:11:22:33:44:55"
    assert Consent.get().device_mac == "02:11:22:33:44:55" and Consent.get().ip == "10.77.0.114"
    assert Authorization.get().ip == "10.77.0.114"
    # The hid authenticates once: a replayed submit has no openNDS context left.
    again = client.post("/connect", data={"csrf_token": token, "email": "fas@example.com", "terms": "yes"},
                        headers={"Accept-Language": "en"})
    assert again.status_code == 409 and "cannot identify your device" in again.get_data(as_text=True)


def test_fas_error_page_is_clear(fas_app):
    client = PortalClient(fas_app.test_client(), ip="10.77.0.114")
    response = client.get("/fas/", query_string={"fas": fas_of(gatewayaddress="evil.example:80")},
                          headers={"Accept-Language": "en"})
    assert response.status_code == 400 and "This sign-in link is not valid" in response.get_data(as_text=True)


def test_fas_route_is_absent_for_other_gateways(client):
    assert client.get("/fas/", query_string={"fas": CAPTURED}).status_code == 404
