"""The nftables driver gating a real guest network, end to end, in namespaces the test builds."""
from __future__ import annotations

import time

import pytest

from portal.core.times import system_utcnow
from portal.gateway.nftables import parse_neighbours
from tests.conftest import require
from tests.e2e.netns import CLIENT_MAC, GW_GUEST, NET, NET6, STORE_HOST6, can_run, portal_command, topology
from tests.livecheck import footfall_process

PORTAL = f"http://{GW_GUEST}:8080"


@pytest.fixture
def net(tmp_path):
    ok, reason = can_run()
    require(ok, reason)
    with topology(tmp_path) as topo:
        topo.start_internet()
        topo.start_dnsmasq(PORTAL)
        yield topo


def run_portal(topo, data_dir, session_seconds=3600):
    cmd, env = portal_command(data_dir, session_seconds)
    return footfall_process(cmd[3:], env, prefix=["ip", "netns", "exec", topo.gw])


def probe(topo, url="http://captive.apple.com/hotspot-detect.html"):
    return topo.client("http", url)


def assert_captive(topo):
    answer = probe(topo)
    assert answer["status"] == 302, answer
    assert answer["location"].startswith(f"{PORTAL}/?continue=http%3A%2F%2Fcaptive.apple.com%2Fhotspot-detect.html")


def test_unauthorized_is_captive_then_signed_in_is_online(net, tmp_path):
    lease = net.dhcp()
    assert lease["router"] == GW_GUEST and lease["dns"] == GW_GUEST
    assert bytes.fromhex(lease["opt114"]).decode() == f"{PORTAL}/api/captive"  # RFC 8910
    with run_portal(net, tmp_path / "data"):
        assert net.client("dns", GW_GUEST, "captive.apple.com")["answers"] == [NET]
        assert_captive(net)
        for url in ("http://connectivitycheck.gstatic.com/generate_204", f"http://{NET}/anything"):
            assert probe(net, url)["status"] == 302
        https = net.client("tcp", NET, "443")
        assert https["error"] == "ConnectionRefusedError" and https["elapsed_ms"] < 500  # reset, not a timeout
        assert "error" in net.client("tcp", NET, "22")
        assert "error" in net.client("dns", NET, "example.com")  # outside resolvers are blocked
        assert net.client("tcp", NET6, "80")["error"] == "ConnectionRefusedError"  # IPv6 gated too
        assert net.hits() == [], "nothing reached the internet before consent"
        assert '"captive": true' in net.client("http", f"{PORTAL}/api/captive")["body"]

        signed = net.client("signin", PORTAL, "ns.visitor@example.com")
        assert signed["status"] == 303, signed

        online = probe(net)
        assert online["status"] == 200 and "Success" in online["body"]
        assert probe(net, "http://connectivitycheck.gstatic.com/generate_204")["status"] == 204
        assert net.client("dns", NET, "example.com").get("answers") is not None
        assert {h["kind"] for h in net.hits()} == {"http", "dns"}
        assert all(":" not in h["client"] for h in net.hits())
        # IPv6 follows the same rule: the internet yes, the store's ULA network no.
        assert net.client("tcp", NET6, "80").get("connected") is True
        assert net.client("tcp", STORE_HOST6, "445")["error"] == "ConnectionRefusedError"
        assert CLIENT_MAC in net.nft("list", "set", "inet", "footfall", "authorized")
        # Its last sign of life, as the driver reads it for the sign-in visits (portal/signin_visits.py).
        neighbours = net.sh("ip", "-j", "-s", "neigh", "show", "dev", "guest0", ns=net.gw).stdout
        assert CLIENT_MAC in parse_neighbours(neighbours, system_utcnow())
        api = net.client("http", f"{PORTAL}/api/captive")["body"]
        assert '"captive": false' in api and "seconds-remaining" in api

        assert net.client("erase", PORTAL)["status"] == 303
        assert_captive(net)
        assert CLIENT_MAC not in net.nft("list", "set", "inet", "footfall", "authorized")


def test_session_expiry_gates_the_device_again(net, tmp_path):
    net.dhcp()
    with run_portal(net, tmp_path / "data", session_seconds=2):
        assert net.client("signin", PORTAL, "short@example.com")["status"] == 303
        assert probe(net)["status"] == 200
        deadline = time.monotonic() + 6
        # A probe cut by the expiry's connection reset answers no status: probe again.
        while probe(net).get("status") != 302 and time.monotonic() < deadline:
            time.sleep(0.25)
        assert_captive(net)


def test_restart_and_reboot_keep_unexpired_clients_online(net, tmp_path):
    net.dhcp()
    data = tmp_path / "data"
    with run_portal(net, data, session_seconds=600):
        assert net.client("signin", PORTAL, "stay@example.com")["status"] == 303
    assert probe(net)["status"] == 200  # portal down: the kernel set still lets the client out
    net.nft("delete", "table", "inet", "footfall")  # a reboot: kernel state is gone
    with run_portal(net, data, session_seconds=600):
        assert probe(net)["status"] == 200, "restored from the database at start-up"
        listing = net.nft("list", "set", "inet", "footfall", "authorized")
        assert CLIENT_MAC in listing
        # Restored with what was left of the session, not a fresh one.
        assert "timeout 10m" not in listing


def test_a_real_browser_in_the_client_namespace_signs_in_and_gets_out(net, tmp_path):
    """Headless Chromium where the phone would be: redirected by the gate, signs in, browses."""
    import shutil
    import sys

    from tests.conftest import have
    from tests.e2e.netns import HERE
    from tests.e2e.test_browser import ARTIFACTS
    require(have("chromium") and have("chromedriver"), "Debian packages chromium and chromium-driver are not installed")
    net.dhcp()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with run_portal(net, tmp_path / "data"):
        done = net.sh(sys.executable, str(HERE / "browser_in_ns.py"), str(ARTIFACTS), ns=net.cli, timeout=120)
    import json
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["captive_url"].startswith(f"{PORTAL}/?continue=http%3A%2F%2Fexample.com%2Fnews")
    assert out["after_submit"].startswith(f"{PORTAL}/online")
    assert out["continue_link"] == "http://example.com/news"
    assert out["site_text"] == "the internet"
    assert any(h["kind"] == "http" and h["host"] == "example.com" for h in net.hits())
    assert shutil.which("chromium")


KEEP_ALIVE = r'''
import http.client, json, sys
def get(conn, path):
    try:
        conn.request("GET", path, headers={"Host": "example.com"})
        answer = conn.getresponse()
        answer.read()
        return {"status": answer.status}
    except OSError as exc:
        return {"error": type(exc).__name__}
kept = http.client.HTTPConnection(sys.argv[1], 80, timeout=3)
print(json.dumps(get(kept, "/before")), flush=True)
sys.stdin.readline()  # the test signs in meanwhile
print(json.dumps({"kept": get(kept, "/again"), "fresh": get(http.client.HTTPConnection(sys.argv[1], 80, timeout=3), "/fresh")}))
'''


def test_a_connection_redirected_before_sign_in_is_reset_after_it(net, tmp_path):
    """A browser reusing a keep-alive connection that the gate sent to the portal would keep
    seeing the portal after sign-in: its next request is reset, and a new connection goes out."""
    import json
    import subprocess
    import sys
    net.dhcp()
    with run_portal(net, tmp_path / "data"):
        proc = subprocess.Popen(["ip", "netns", "exec", net.cli, sys.executable, "-c", KEEP_ALIVE, NET],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert json.loads(proc.stdout.readline()) == {"status": 302}  # the portal answered
            assert net.client("signin", PORTAL, "keepalive@example.com")["status"] == 303
            out, _ = proc.communicate("go\n", timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    after = json.loads(out)
    assert after == {"kept": {"error": "ConnectionResetError"}, "fresh": {"status": 200}}, after
    assert [h["path"] for h in net.hits() if h["kind"] == "http"] == ["/fresh"]
