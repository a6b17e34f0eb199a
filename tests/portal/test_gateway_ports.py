"""Guests reach the appliance on DNS, DHCP and the portal, and on the TLS front's https port only
when the portal is served over https (deploy/install.sh --tls-cert)."""
import re

from portal.config import load_settings
from portal.gateway import tls_ports
from portal.gateway.nftables import ruleset


def accepted_tcp(rules: str) -> set[int]:
    return {int(p) for p in re.search(r"tcp dport \{ ([0-9, ]+) \} accept", rules).group(1).split(", ")}


def test_plain_http_portal_opens_no_https_port(tmp_path):
    settings = load_settings(environ={}, data_dir=str(tmp_path), portal_url="http://192.168.4.1:8080")
    assert tls_ports(settings) == ()
    assert accepted_tcp(ruleset("wlan0", settings.listen_port, tls_ports=tls_ports(settings))) == {53, 8080}


def test_https_portal_opens_its_port(tmp_path):
    for url, port in (("https://wifi.example", 443), ("https://wifi.example:8443", 8443)):
        settings = load_settings(environ={}, data_dir=str(tmp_path), portal_url=url)
        assert accepted_tcp(ruleset("wlan0", 8080, tls_ports=tls_ports(settings))) == {53, 8080, port}
