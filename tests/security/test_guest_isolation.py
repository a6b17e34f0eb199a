"""Issue 12, item 1: a hostile guest on the WiFi, against the nftables gate, in namespaces.

Each test first shows the attack's target is really there (a service that logs who connected),
then that the gate refuses it at once (TCP reset: ConnectionRefusedError, not a timeout) and that
nothing reached it.
"""
from __future__ import annotations

import ipaddress
import json
import sys
import time

import pytest

from portal.config import ConfigError, load_settings
from portal.gateway.isolation import Service, parse_networks, parse_services
from portal.gateway.nftables import DNS_BURST, DNS_RATE
from tests.conftest import require
from tests.e2e.netns import (CLIENT2, CLIENT2_6, CLIENT2_PORT, CLIENT6, GW_GUEST, GW_OTHER_PORT, GW_UP, GW6_GUEST, NET, NET6,
                             PROBE_HOSTS, STORE_HOST, STORE_HOST6, STORE_PORTS, STORE_PRINTER, can_run, portal_command,
                             topology)
from tests.livecheck import footfall_process

PORTAL = f"http://{GW_GUEST}:8080"
REFUSED = "ConnectionRefusedError"  # the gate's TCP reset; a silent drop would be TimeoutError
PROBES = ("http://captive.apple.com/hotspot-detect.html", "http://connectivitycheck.gstatic.com/generate_204",
          "http://www.msftconnecttest.com/connecttest.txt", "http://detectportal.firefox.com/success.txt",
          "http://example.com/")
# Queries sent as fast as a tunnel would, paced over about a second; prints what came back.
FLOOD = r'''
import json, socket, struct, sys, time
server, count, suffix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setblocking(False)
answered, start = set(), time.monotonic()
def drain():
    while True:
        try:
            answered.add(struct.unpack(">H", sock.recv(4096)[:2])[0])
        except BlockingIOError:
            return
for i in range(count):
    name = f"n{i}.{suffix}"
    query = struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    sock.sendto(query, (server, 53))
    drain()
    time.sleep(max(0.0, start + (i + 1) / count - time.monotonic()))
elapsed = time.monotonic() - start
deadline = time.monotonic() + 1.5
while time.monotonic() < deadline:
    drain()
    time.sleep(0.01)
print(json.dumps({"sent": count, "answered": len(answered), "elapsed_s": elapsed}))
'''


@pytest.fixture
def net(tmp_path):
    ok, reason = can_run()
    require(ok, reason)
    with topology(tmp_path) as topo:
        topo.start_internet()
        topo.start_dnsmasq(PORTAL)
        topo.start_store_lan()
        yield topo


def run_portal(topo, data_dir, **settings: str):
    cmd, env = portal_command(data_dir)
    env.update({f"FOOTFALL_{k.upper()}": v for k, v in settings.items()})
    return footfall_process(cmd[3:], env, prefix=["ip", "netns", "exec", topo.gw])


def tcp(topo, host, port, ns=None):
    return topo.client("tcp", str(host), str(port), ns=ns)


def signed_in(topo, lease=True):
    if lease:
        topo.dhcp()
    answer = topo.client("signin", PORTAL, "hostile.guest@example.com")
    assert answer["status"] == 303, answer


def test_signed_in_guest_reaches_the_internet_but_never_the_store_lan(net, tmp_path):
    # The store's uplink also carries a public subnet (an ISP's /29): refused as the uplink's own,
    # read from the interface, though no fixed range covers it.
    net.sh("ip", "addr", "add", "81.0.0.1/29", "dev", "up0", ns=net.gw)
    net.sh("ip", "addr", "add", "81.0.0.2/29", "dev", "eth0", ns=net.net)
    net.sh("ip", "addr", "add", "11.22.33.45/32", "dev", "lo", ns=net.net)  # the owner blocks this one
    public_neighbour = net.listen(net.net, "81.0.0.2:445", "11.22.33.45:80", name="public-neighbour")
    with run_portal(net, tmp_path / "data", guest_allowed_services=f"{STORE_PRINTER}:631",
                    guest_blocked_networks="11.22.33.45/32"):
        signed_in(net)
        # The internet, both families.
        assert net.client("http", f"http://{NET}/generate_204")["status"] == 204
        assert tcp(net, NET6, 80).get("connected") is True
        # The store's LAN: a NAS on 192.168.1.10:445 (the reproduction), over IPv6 too.
        assert tcp(net, STORE_HOST, STORE_PORTS[STORE_HOST])["error"] == REFUSED
        assert tcp(net, STORE_HOST6, STORE_PORTS[STORE_HOST])["error"] == REFUSED
        assert tcp(net, "81.0.0.2", 445)["error"] == REFUSED
        assert tcp(net, "11.22.33.45", 80)["error"] == REFUSED
        assert net.client("http", f"http://{NET}/")["status"] == 200  # its neighbour is not blocked
        # The owner's exception, and only that port of that address.
        assert tcp(net, STORE_PRINTER, 631).get("connected") is True
        assert tcp(net, STORE_PRINTER, 445)["error"] == REFUSED
        # The appliance's other ports, on each of its addresses; DNS and the portal still answer.
        for address in (GW_GUEST, GW_UP, GW6_GUEST):
            assert tcp(net, address, GW_OTHER_PORT)["error"] == REFUSED, address
        assert tcp(net, GW_UP, 8080).get("connected") is True
        assert net.client("dns", GW_GUEST, "example.com")["answers"] == [NET]
    assert net.connections(net.store_log) == [{"service": f"{STORE_PRINTER}:631", "client": net.lease()["ip"]}]
    assert net.connections(net.appliance_log) == []
    assert net.connections(public_neighbour) == []


def test_link_local_ipv6_to_the_appliance_is_refused(net, tmp_path):
    lladdr = net.link_local(net.gw, "guest0")
    with run_portal(net, tmp_path / "data"):
        signed_in(net)
        assert tcp(net, f"{lladdr}%eth0", GW_OTHER_PORT)["error"] == REFUSED
    assert net.connections(net.appliance_log) == []
    # The service listens on IPv6: the appliance itself reaches it.
    assert tcp(net, "::1", GW_OTHER_PORT, ns=net.gw).get("connected") is True


def test_guests_cannot_reach_each_other_through_the_gateway(net, tmp_path):
    # The WiFi keeps stations apart (ap_isolate, the bridge's isolated ports here); a guest then
    # sends to the other's address through the gateway's MAC.
    # The other phone's answers take the same way here, so that a connection can show (a one-way
    # packet, an exploit say, needs no answer at all).
    mine = net.dhcp()["ip"]
    for key in ("net.ipv4.conf.all.accept_redirects=0", "net.ipv4.conf.eth0.accept_redirects=0",
                "net.ipv6.conf.all.accept_redirects=0", "net.ipv6.conf.eth0.accept_redirects=0"):
        net.sh("sysctl", "-qw", key, ns=net.cli)  # the attacker keeps its route, whatever the gateway says
    net.sh("ip", "route", "add", f"{CLIENT2}/32", "via", GW_GUEST, ns=net.cli)
    net.sh("ip", "-6", "route", "add", f"{CLIENT2_6}/128", "via", GW6_GUEST, ns=net.cli)
    net.sh("ip", "route", "add", f"{mine}/32", "via", GW_GUEST, ns=net.cli2)
    net.sh("ip", "-6", "route", "add", f"{CLIENT6}/128", "via", GW6_GUEST, ns=net.cli2)
    # Before the gate exists the way through the gateway is open: the attack works.
    assert tcp(net, CLIENT2, CLIENT2_PORT).get("connected") is True
    assert tcp(net, CLIENT2_6, CLIENT2_PORT).get("connected") is True
    before = net.connections(net.client2_log)
    assert len(before) == 2
    with run_portal(net, tmp_path / "data"):
        signed_in(net, lease=False)  # a new lease would flush the routes above
        assert net.client("http", f"http://{NET}/generate_204")["status"] == 204
        assert tcp(net, CLIENT2, CLIENT2_PORT)["error"] == REFUSED
        assert tcp(net, CLIENT2_6, CLIENT2_PORT)["error"] == REFUSED
    assert net.connections(net.client2_log) == before


def test_unauthorized_dns_is_bounded_per_client_and_captive_detection_still_works(net, tmp_path):
    net.dhcp()
    with run_portal(net, tmp_path / "data"):
        # A phone joining: every probe host resolves and every probe meets the portal.
        for host in PROBE_HOSTS:
            assert net.client("dns", GW_GUEST, host)["answers"] == [NET], host
        for url in PROBES:
            answer = net.client("http", url)
            assert answer["status"] == 302 and answer["location"].startswith(f"{PORTAL}/?continue="), (url, answer)
        time.sleep(DNS_BURST / DNS_RATE + 0.5)  # the bucket is full again

        flood = flood_dns(net, 500, "flood.example.com")
        answered = net.dns_queries(".flood.example.com")
        assert answered == flood["answered"]  # what the client got is what dnsmasq saw
        assert DNS_BURST <= answered <= DNS_BURST + DNS_RATE * (flood["elapsed_s"] + 1), flood
        assert net.hits() == [], "nothing reached the internet"

        # Per client: the other guest resolves at once, and the flooder recovers within seconds.
        assert net.client("dns", GW_GUEST, "captive.apple.com", ns=net.cli2)["answers"] == [NET]
        deadline = time.monotonic() + 10
        while "answers" not in net.client("dns", GW_GUEST, "captive.apple.com") and time.monotonic() < deadline:
            pass
        assert net.client("http", PROBES[0])["status"] == 302

        # Signed in, the same client is no longer bounded.
        assert net.client("signin", PORTAL, "dns.guest@example.com")["status"] == 303
        online = flood_dns(net, 300, "online.example.com")
    assert online["answered"] >= 290, online


def flood_dns(topo, count, suffix):
    done = topo.sh(sys.executable, "-c", FLOOD, GW_GUEST, str(count), suffix, ns=topo.cli, timeout=60)
    return json.loads(done.stdout)


@pytest.mark.parametrize("name,value,message", [
    ("guest_allowed_services", "192.168.1.20", "is not address:port"),
    ("guest_allowed_services", "192.168.1.20:0", "port must be 1-65535"),
    ("guest_allowed_services", "192.168.1.20:65536", "port must be 1-65535"),
    ("guest_allowed_services", "192.168.1.20:٦٣١", "is not address:port"),  # non-ASCII digits
    ("guest_allowed_services", "fd00::5:443", "is not address:port"),
    ("guest_allowed_services", "printer.lan:631", "is not address:port"),
    ("guest_allowed_services", "192.168.1.256:631", "is not an IP address"),
    ("guest_blocked_networks", "192.168.1.0/33", "is not a network"),
    ("guest_blocked_networks", "10.0.0.0/8; flush ruleset", "is not a network"),
    ("uplink_interface", 'eth0" accept', "is not an interface name"),
])
def test_bad_isolation_settings_are_refused_with_a_reason(name, value, message):
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={}, **{name: value})
    assert name in str(caught.value) and message in str(caught.value)


def test_isolation_settings_parse():
    assert parse_services(" 192.168.1.20:631, [fd00::5]:443 ,192.168.1.20:631") == (
        Service(ipaddress.ip_address("192.168.1.20"), 631), Service(ipaddress.ip_address("fd00::5"), 443))
    assert [str(n) for n in parse_networks("192.168.1.7/24, 2001:db8:1::/48")] == ["192.168.1.0/24", "2001:db8:1::/48"]
