"""DHCP from the deploy template (deploy/dnsmasq-footfall.conf.in) serves bursts of phones, and
never hands out an address twice, in network namespaces with real dnsmasq and udhcpc."""
from __future__ import annotations

import ipaddress

import pytest

from tests.conftest import require
from tests.e2e.dhcp_lan import PREFIX, TEMPLATE, DhcpLan, render
from tests.e2e.netns import can_run

PHONES = 12


def _lan(tmp_path, phones: int, squatter_ip: str | None = None):
    ok, reason = can_run()
    require(ok, reason)
    lan = DhcpLan(tmp_path, phones)
    try:
        lan.build(squatter_ip)
        yield lan
    finally:
        lan.close()


@pytest.fixture
def lan(tmp_path):
    yield from _lan(tmp_path, PHONES)


@pytest.fixture
def crowded(tmp_path):
    yield from _lan(tmp_path, 10, squatter_ip=f"{PREFIX}.55")


def in_range(ip: str, first: str, last: str) -> bool:
    return ipaddress.ip_address(first) <= ipaddress.ip_address(ip) <= ipaddress.ip_address(last)


def test_the_template_trades_the_ping_check_for_authority(tmp_path):
    lines = render(f"{PREFIX}.50", f"{PREFIX}.250", tmp_path / "leases").splitlines()
    assert "no-ping" in lines and "dhcp-authoritative" in lines
    assert f"dhcp-range={PREFIX}.50,{PREFIX}.250,255.255.255.0,4h" in lines
    assert "@" not in "".join(line for line in lines if not line.startswith("#"))
    assert "dhcp-leasefile=/var/lib/misc/dnsmasq.leases" in TEMPLATE.read_text().splitlines()


def test_twelve_phones_asking_at_once_all_get_distinct_leases(lan):
    lan.start_dnsmasq()
    got = lan.ask_at_once()
    leased = [ip for ip in got.values() if ip]
    assert len(leased) == PHONES, f"{PHONES - len(leased)} phone(s) without a lease: {got}\n{lan.log()[-3000:]}"
    assert len(set(leased)) == PHONES
    assert all(in_range(ip, f"{PREFIX}.50", f"{PREFIX}.250") for ip in leased)
    assert sorted(lan.lease_db().values()) == sorted(leased)

    # dnsmasq restarts (an upgrade, a reboot): its lease database gives every phone its address back.
    lan.stop_dnsmasq()
    lan.start_dnsmasq()
    again = lan.ask_at_once()
    assert again == got


def test_an_address_in_use_is_never_leased_twice(crowded):
    """Ten addresses, one of them taken by a host nobody leased it to, ten phones: dnsmasq offers
    the taken one to someone (no ping), that phone's own check declines it, and nine phones get
    the nine free addresses: no duplicate, and the tenth waits rather than collide."""
    crowded.start_dnsmasq(first=f"{PREFIX}.50", last=f"{PREFIX}.59")
    got = crowded.ask_at_once()
    leased = [ip for ip in got.values() if ip]
    assert f"{PREFIX}.55" not in leased
    assert len(leased) == 9 and len(set(leased)) == 9, got
    assert all(in_range(ip, f"{PREFIX}.50", f"{PREFIX}.59") for ip in leased)
    assert f"DHCPDECLINE(guest0) {PREFIX}.55" in crowded.log()
    assert f"{PREFIX}.55" not in crowded.lease_db().values()

