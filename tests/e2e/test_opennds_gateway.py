"""Footfall as the FAS of the real openNDS 9.10 daemon, in namespaces the test builds."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import require
from tests.e2e.netns import GW_GUEST, can_run, portal_command, topology
from tests.livecheck import footfall_process

FASKEY = "e2eFasKey0123456"
PROBE = "http://captive.apple.com/hotspot-detect.html"


@pytest.fixture
def net(tmp_path):
    ok, reason = can_run()
    require(ok, reason)
    require(shutil.which("opennds") is not None and shutil.which("iptables-legacy") is not None,
            "Debian packages opennds and iptables are not installed")
    host_files = {p: p.read_bytes() for p in (Path("/etc/dnsmasq.conf"), Path("/etc/hosts")) if p.exists()}
    with topology(tmp_path) as topo:
        topo.start_internet()
        topo.start_dnsmasq(f"http://{GW_GUEST}:8080")
        yield topo
    for path, content in host_files.items():
        assert path.read_bytes() == content, f"the test changed the host's {path}"


def test_opennds_sends_captive_clients_to_footfall_and_lets_them_out(net, tmp_path):
    net.dhcp()  # openNDS refuses clients missing from the DHCP lease file
    cmd, env = portal_command(tmp_path / "data", gateway="opennds", faskey=FASKEY)
    with footfall_process(cmd[3:], env, prefix=["ip", "netns", "exec", net.gw]):
        net.start_opennds(FASKEY)
        before = net.client("http", PROBE)
        assert before["status"] in (302, 307) and before["location"].startswith(f"http://{GW_GUEST}:8080/fas/?fas=")
        assert net.hits() == []

        steps = net.client("fas-signin", PROBE, "opennds.visitor@example.com")
        assert steps["fas_page"]["status"] == 200, steps
        assert steps["submit"]["status"] == 303
        assert steps["submit"]["location"].startswith(f"http://{GW_GUEST}:2050/opennds_auth/?tok=")
        # openNDS accepted our token and sent the browser to the landing page we asked for.
        assert steps["auth"]["status"] in (302, 307), steps
        assert steps["auth"]["location"].startswith(f"http://{GW_GUEST}:8080/online")

        after = net.client("http", PROBE)
        assert after["status"] == 200 and "Success" in after["body"]
        assert any(h["kind"] == "http" and h["host"] == "captive.apple.com" for h in net.hits())


def test_forged_fas_gets_a_clear_error(net, tmp_path):
    net.dhcp()
    cmd, env = portal_command(tmp_path / "data", gateway="opennds", faskey=FASKEY)
    with footfall_process(cmd[3:], env, prefix=["ip", "netns", "exec", net.gw]):
        answer = net.client("http", f"http://{GW_GUEST}:8080/fas/?fas=aGlkPW5vcGU=")
        assert answer["status"] == 400
        assert "không hợp lệ" in answer["body"]  # the store's default language: Vietnamese
