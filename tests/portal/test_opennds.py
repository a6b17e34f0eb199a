"""openNDS FAS: level 1 parsing, level 2/3 decryption, the token, and the visitor flow through Flask."""
import base64
import hashlib
import logging
import subprocess
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from portal import create_app
from portal.config import ConfigError, load_settings
from portal.db import database
from portal.gateway.opennds import (FailureThrottle, InvalidFas, OpenNDSGateway, ReplayGuard, auth_token,
                                    decrypt_fas, parse_fas, parse_query, peer_key)
from portal.models import Authorization, Consent, Device
from tests.conftest import PORTAL_HOST, PortalClient, have, require
from tests.portal.opennds_fas import FASKEY, HID, ciphertext_of, encrypt, level1, level2, query, wrap

# Captured from openNDS 9.10 (Debian) in a test namespace: level 1 ...
CAPTURED = ("aGlkPWRjNWE2NGMxZDQxY2U3MGFlNGZjMTQyYTM5YzM1M2Y3MjcwMjBjYjg1OGY2ZTg0ODQyNGMwOTBjMzAwNGI4ZjcsIGNsaWVudGlwPTEw"
            "Ljc3LjAuMTE0LCBjbGllbnRtYWM9MDI6MTE6MjI6MzM6NDQ6NTUsIGNsaWVudF90eXBlPWNwZF9jYW4sIGdhdGV3YXluYW1lPWZvb3RmYWxs"
            "dGVzdCUyME5vZGUlM2E0ZWQyMzFhMzA0MWIlMjAsIGdhdGV3YXl1cmw9aHR0cCUzYSUyZiUyZnN0YXR1cy5jbGllbnQsIHZlcnNpb249OS4x"
            "MC4wLCBnYXRld2F5YWRkcmVzcz0xMC43Ny4wLjE6MjA1MCwgZ2F0ZXdheW1hYz00ZWQyMzFhMzA0MWIsIG9yaWdpbnVybD1odHRwJTNhJTJm"
            "JTJmY2FwdGl2ZS5hcHBsZS5jb20lMmZob3RzcG90LWRldGVjdC5odG1sLCBjbGllbnRpZj1ndWVzdDAsIHRoZW1lc3BlYz0obnVsbCksIChu"
            "dWxsKShudWxsKShudWxsKShudWxsKQ==")
# ... and level 2 (faskey e2eFasKey0123456): php-cli's openssl_encrypt, as openNDS runs it.
CAPTURED2 = {"iv": "f32c98fcfb5b6153", "fas": (
    "MnRocFBQa1dXSVY2ZEMwajRLNFV6bzMwSUZMZEk2YzZBU1gyMEdWbEJyaXpqaW5QNmZSY3grS000eTNzeVZTQ25IUFR4WGhQQ0JyaEJ5N0l4VTEv"
    "QUdxNm5xL3hBWGZ3ZkhYOEQvNFA5MWJ0YWRzNUZOdThHMDNSQm1rTFZTV2JtSEgwdExVUll2WHpyWWFmVTJ3RWdmUnUwWDY4SHd3Q2h5UTE1emRt"
    "QjBod1JKbWEwTG9rd21zSytpaGx3N3ltNkdQNndwcVBDSUdTQVdYSThzT0lzNEdsSlFHNW4yK3BGU3puQkY4ZDVFb3hFOVRyRjNMMTdRbTVMZStk"
    "dzhMdjNoQzdGOVkyM2xpeURLdlNxekJNWFJKVXM0OVUrMHhBWklRQWRtWS9qRGgvMkw0QXZpT1lvWGozV09KdzVNbE93UlNpbjIvTUtIWDU4R2cw"
    "MEg5d0F6QTZjb1E3RW5kK1NXbFdXOVlZekk3cElKQWpOY1BnbG5tM0k2LzJrR1hWdUd2QklGN1hML3lrYVJXUG50dXRQTXo4bGk3OUNrUi9pcjho"
    "V2FNYjlGSHVGQS8rc1llSkNWaFhtcWlvaFBBN3Zlc0NuQ25JNGE5MVV3eWRxV25hMDFjdDQ5RkFmRm9FeTFDR0xFaDNZaSt4bkhPUEpQNWpqNndO"
    "eEo0VGxlWGszQ2kxUFJod3g5UityeU5kRGdNVnloVFZoK2lQK09DQ2hQcTVBS3hIOWd0KzNzOCtTZWdtSWRXQ3dhRmdBT21sSzFDRVFXZnQvWDVV"
    "VytEeGx0Nm56eEZqWm12dlJiTDJlc2dUSThXTks0WT0=")}
CAPTURED2_KEY = "e2eFasKey0123456"


def test_parses_what_opennds_sends_at_level_1():
    fas = parse_fas(CAPTURED)
    assert (fas.hid, fas.clientip, fas.clientmac, fas.gatewayaddress, fas.authdir, fas.level) == (
        HID, "10.77.0.114", "02:11:22:33:44:55", "10.77.0.1:2050", "opennds_auth", 1)
    assert fas.originurl == "http://captive.apple.com/hotspot-detect.html"
    assert fas.client_type == "cpd_can" and not fas.verified


def test_decrypts_what_opennds_sends_at_level_2():
    text, ciphertext = decrypt_fas(CAPTURED2["fas"], CAPTURED2["iv"], CAPTURED2_KEY)
    fas = parse_query(text, frozenset(), level=2)
    assert (fas.hid, fas.clientip, fas.clientmac, fas.gatewayaddress, fas.authdir) == (
        "ec11526659c09b807e98153d25adaf6ee92f98e7fffad37ba8e176de6bf76c44", "10.77.0.114", "02:11:22:33:44:55",
        "10.77.0.1:2050", "opennds_auth")
    assert fas.gatewayname == "footfall-test%20Node%3a4a7baf5c7379%20" and fas.verified
    assert fas.originurl == "http://captive.apple.com/hotspot-detect.html"
    assert len(ciphertext) % 16 == 0


@pytest.mark.parametrize("faskey", ["1234567890", "e2eFasKey0123456", "K" * 32])
def test_decrypts_what_php_openssl_encrypts(faskey):
    """php-cli's openssl_encrypt (what openNDS runs on the router): NUL-padded key, hex IV, base64 twice."""
    require(have("php"), "php-cli is not installed (Debian package php-cli)")
    text = query(clientmac="02:aa:bb:cc:dd:ee")
    script = ('$iv = substr(hash("sha256", base64_encode(random_bytes(8))), 0, 16);'
              'echo base64_encode(openssl_encrypt($argv[1], "aes-256-cbc", $argv[2], 0, $iv)), " ", $iv;')
    out = subprocess.run(["php", "-r", script, text, faskey], capture_output=True, text=True, check=True).stdout
    fas, iv = out.split()
    assert decrypt_fas(fas, iv, faskey)[0] == text


def test_token_is_sha256_of_hid_and_faskey():
    assert auth_token(HID, FASKEY) == hashlib.sha256((HID + FASKEY).encode()).hexdigest()


@pytest.mark.parametrize("value", [
    None, "", "%%%", "not base64!", base64.b64encode(b"\xff\xfe").decode(), "A" * 5000,
    level1(hid="short"), level1(hid="g" * 64), level1(clientmac="zz:11:22:33:44:55"), level1(clientip="10.77.0"),
    level1(clientmac="02:11:22:33:44:55%0a"),  # a MAC and a newline: no MAC (`$` would take it)
    level1(gatewayaddress="evil.example:80"), level1(gatewayaddress="8.8.8.8:2050"),
    level1(gatewayaddress="10.77.0.1"), level1(authdir="../../x"),
])
def test_malformed_or_foreign_level1_fas_is_refused(value):
    with pytest.raises(InvalidFas):
        parse_fas(value)


def _flip(fas: str, index: int) -> str:
    raw = bytearray(ciphertext_of(fas))
    raw[index] ^= 0x01
    return wrap(bytes(raw))


GOOD = level2()
TAMPERED = {
    "missing iv": {"fas": GOOD["fas"]},
    "short iv": {"fas": GOOD["fas"], "iv": GOOD["iv"][:15]},
    "upper-case iv": {"fas": GOOD["fas"], "iv": "ABCDEF0123456789"},
    "missing fas": {"iv": GOOD["iv"]},
    "level-1 fas": {"fas": level1(), "iv": GOOD["iv"]},
    "one base64 layer": {"fas": base64.b64encode(ciphertext_of(GOOD["fas"])).decode(), "iv": GOOD["iv"]},
    "wrong key": level2(faskey="0987654321fedcba"),
    "other iv": {"fas": GOOD["fas"], "iv": "0" * 16},
    "truncated": {"fas": wrap(ciphertext_of(GOOD["fas"])[:-16]), "iv": GOOD["iv"]},
    "not whole blocks": {"fas": wrap(ciphertext_of(GOOD["fas"])[:-1]), "iv": GOOD["iv"]},
    "last block flipped": {"fas": _flip(GOOD["fas"], -1), "iv": GOOD["iv"]},
    "oversized": {"fas": "QUFB" * 1100, "iv": GOOD["iv"]},
    "foreign gateway": level2(gatewayaddress="8.8.8.8:2050"),
    "no gatewayname": level2(gatewayname=None),
    "garbage": encrypt("hello, world"),
    "not ascii": encrypt("hid=é"),
}


@pytest.mark.parametrize("name", TAMPERED)
def test_forged_or_tampered_level2_fas_is_refused(name):
    gateway = OpenNDSGateway(FASKEY, level=2)
    with pytest.raises(InvalidFas):
        gateway.open_fas(TAMPERED[name], "10.77.0.114", "nonce")


def test_gateway_allowlist():
    assert parse_fas(level1(), frozenset({"10.77.0.1:2050"})).gatewayaddress == "10.77.0.1:2050"
    with pytest.raises(InvalidFas):
        parse_fas(level1(), frozenset({"10.99.0.1:2050"}))
    with pytest.raises(InvalidFas):
        OpenNDSGateway(FASKEY, 2, frozenset({"10.99.0.1:2050"})).open_fas(level2(), "10.77.0.114", "n")


def test_unsafe_originurl_is_dropped_not_offered():
    assert parse_fas(level1(originurl=quote("javascript:alert(1)", safe=""))).originurl is None


def test_a_ciphertext_belongs_to_the_first_session_that_shows_it():
    clock = [0.0]
    guard = ReplayGuard(ttl=100, size=3, clock=lambda: clock[0])
    assert guard.claim(b"a", "s1") and guard.claim(b"a", "s1")  # a reload in the same session
    assert not guard.claim(b"a", "s2")
    clock[0] = 101
    assert guard.claim(b"a", "s2")  # forgotten after its time-to-live


def test_refusals_throttle_the_tcp_peer_only():
    clock = [0.0]
    throttle = FailureThrottle(limit=3, window=60, clock=lambda: clock[0])
    for _ in range(3):
        assert not throttle.blocked("peer:a")
        throttle.fail("peer:a")
    assert throttle.blocked("peer:a") and not throttle.blocked("peer:b")
    clock[0] = 61
    assert not throttle.blocked("peer:a")


def test_peer_keys():
    assert peer_key("10.77.0.9") == "peer:10.77.0.9" == peer_key("::ffff:10.77.0.9")
    assert peer_key("fd77::1:2:3:4") == peer_key("fd77::9") == "peer:fd77::/64"
    assert peer_key("nonsense") == "peer:?"


def _settings(tmp_path, **extra):
    values = {"data_dir": str(tmp_path / "data"), "portal_url": f"http://{PORTAL_HOST}", "gateway": "opennds",
              "opennds_faskey": FASKEY, **extra}
    return load_settings(environ={}, **values)


@pytest.mark.parametrize("extra, message", [
    ({"opennds_secure_level": 4}, "must be 1, 2 or 3"),
    ({"opennds_secure_level": 3}, "needs opennds_authmon_networks"),
    ({"opennds_secure_level": 3, "opennds_authmon_networks": "10.0.0.300/32"}, "is not a network"),
    ({"opennds_faskey": "with space"}, "letters and digits"),
    ({"opennds_faskey": "k" * 33}, "letters and digits"),
])
def test_settings_are_checked(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        _settings(tmp_path, **extra)


@pytest.fixture
def fas_app(tmp_path):
    app = create_app(_settings(tmp_path))
    app.config["TESTING"] = True
    yield app
    database.close()


def test_level2_visitor_signs_in_and_is_sent_to_opennds(fas_app):
    client = PortalClient(fas_app.test_client(), ip="10.77.0.114")
    page = client.get("/fas/", query_string=level2(originurl=quote("http://captive.apple.com/hotspot-detect.html")),
                      headers={"Accept-Language": "en"})
    assert page.status_code == 200 and "Free WiFi" in page.get_data(as_text=True)
    token = client.token("/?form=1")
    response = client.post("/connect", data={"csrf_token": token, "email": "fas@example.com", "terms": "yes",
                                             "continue": "http://captive.apple.com/hotspot-detect.html"})
    assert response.status_code == 303
    target = urlsplit(response.headers["Location"])
    assert (target.scheme, target.netloc, target.path) == ("http", "10.77.0.1:2050", "/opennds_auth/")
    query_args = parse_qs(target.query)
    assert query_args["tok"] == [auth_token(HID, FASKEY)]
    assert query_args["redir"][0].startswith(f"http://{PORTAL_HOST}/online?continue=http")
    assert Device.get().mac == "02:11:22:33:44:55"
    assert Consent.get().device_mac == "02:11:22:33:44:55" and Consent.get().ip == "10.77.0.114"
    assert Authorization.get().ip == "10.77.0.114"
    # The hid authenticates once: a replayed submit has no openNDS context left.
    again = client.post("/connect", data={"csrf_token": token, "email": "fas@example.com", "terms": "yes"},
                        headers={"Accept-Language": "en"})
    assert again.status_code == 409 and "cannot identify your device" in again.get_data(as_text=True)


def test_fas_error_page_is_clear(fas_app):
    client = PortalClient(fas_app.test_client(), ip="10.77.0.114")
    response = client.get("/fas/", query_string=level2(gatewayaddress="evil.example:80"),
                          headers={"Accept-Language": "en"})
    assert response.status_code == 400 and "This sign-in link is not valid" in response.get_data(as_text=True)


def test_level1_only_when_the_setting_says_so_and_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="portal.gateway.opennds"):
        app = create_app(_settings(tmp_path, opennds_secure_level=1))
    try:
        assert any("secure level 1" in r.getMessage() for r in caplog.records)
        client = PortalClient(app.test_client(), ip="10.77.0.114")
        assert client.get("/fas/", query_string={"fas": CAPTURED}).status_code == 200
    finally:
        database.close()


def test_fas_route_is_absent_for_other_gateways(client):
    assert client.get("/fas/", query_string={"fas": CAPTURED}).status_code == 404
    assert client.post("/fas/", data={"auth_get": "view"}).status_code == 404
