"""Input patterns end in \\Z, not $: `$` also matches before a final newline, so "value\\n" would
pass a check and reach a file, a header, a firewall rule or a log line (found in the core's review)."""
from __future__ import annotations

import re

import pytest

from portal import accounts, manager_sessions, store_settings
from portal.captive import probes
from portal.gateway import isolation, opennds, opennds_authmon

PATTERNS = {
    "username": (accounts._USERNAME, "owner1"), "totp": (accounts._TOTP_CODE, "123456"),
    "recovery": (accounts._RECOVERY_CODE, "abcdef-012345"), "faskey": (opennds.FASKEY, "ChangeMe0123"),
    "hid": (opennds._HID, "a" * 64), "authdir": (opennds._AUTHDIR, "opennds_auth"),
    "gateway": (opennds._GATEWAY, "192.168.1.1:2050"), "gatewayname": (opennds._GATEWAYNAME, "Shop%20WiFi"),
    "iv": (opennds._IV, "0123456789abcdef"), "outer": (opennds._OUTER, "YWJj"),
    "authmon_hex": (opennds_authmon._HEX64, "b" * 64), "iface": (isolation.IFACE_RE, "wlan0"),
    "host": (probes._HOST_RE, "captive.apple.com"), "session_token": (manager_sessions._TOKEN, "A" * 43),
    "brand_color": (store_settings.EDITABLE["brand_color"], "#12ab34"),
    "store_name": (store_settings.EDITABLE["store_name"], "Cà Phê Sáng"),
}


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_a_final_newline_never_passes(name):
    pattern, good = PATTERNS[name]
    assert isinstance(pattern, re.Pattern)
    assert pattern.match(good), good
    assert not pattern.match(good + "\n") and not pattern.fullmatch(good + "\n")
