"""Footfall as the FAS of the real openNDS 9.10 daemon, at secure levels 1, 2 and 3, in namespaces."""
from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from portal.core.times import system_utcnow
from portal.gateway.opennds import parse_ndsctl_clients
from tests.conftest import require
from tests.e2e import opennds_harness as nds
from tests.e2e.netns import GW_GUEST, can_run, portal_command, topology
from tests.livecheck import footfall_process

FASKEY = "e2eFasKey0123456"
ONE_DAY = datetime.timedelta(days=1)
PROBE = "http://captive.apple.com/hotspot-detect.html"
PORTAL = f"http://{GW_GUEST}:{nds.FAS_PORT}"


def _net(tmp_path, level: int):
    ok, reason = can_run()
    require(ok, reason)
    missing = nds.missing_packages(level)
    require(not missing, f"Debian packages missing: {' '.join(missing)}")
    host_files = {p: p.read_bytes() for p in (Path("/etc/dnsmasq.conf"), Path("/etc/hosts"),
                                              Path("/etc/opennds/opennds.conf")) if p.exists()}
    with topology(tmp_path / "net") as topo:
        topo.start_internet()
        topo.start_dnsmasq(PORTAL)
        topo.dhcp()  # openNDS refuses clients missing from the DHCP lease file
        yield topo
    for path, content in host_files.items():
        assert path.read_bytes() == content, f"the test changed the host's {path}"


@pytest.fixture
def net1(tmp_path):
    yield from _net(tmp_path, 1)


@pytest.fixture
def net2(tmp_path):
    yield from _net(tmp_path, 2)


@pytest.fixture
def net3(tmp_path):
    yield from _net(tmp_path, 3)


def portal(tmp_path, **settings: str):
    cmd, env = portal_command(tmp_path / "data", gateway="opennds", faskey=FASKEY)
    env.update({f"FOOTFALL_{k.upper()}": v for k, v in settings.items()})
    return cmd[3:], env


def test_level2_opennds_sends_encrypted_clients_to_footfall_and_lets_them_out(net2, tmp_path):
    args, env = portal(tmp_path)  # level 2 is the default
    with footfall_process(args, env, prefix=["ip", "netns", "exec", net2.gw]):
        nds.start_opennds(net2, FASKEY, level=2)
        steps = nds.run_client(net2, "signin", PROBE, "level2.visitor@example.com")
        assert steps["fas_url"].startswith(f"{PORTAL}/fas/?fas=") and "&iv=" in steps["fas_url"], steps
        assert steps["fas_page"]["status"] == 200, steps
        assert steps["submit"]["status"] == 303
        assert steps["submit"]["location"].startswith(f"http://{GW_GUEST}:2050/opennds_auth/?tok=")
        # openNDS accepted the token and sent the browser to the landing page we asked for.
        assert steps["auth"]["status"] in (302, 307), steps
        assert steps["auth"]["location"].startswith(f"{PORTAL}/online")
        assert steps["after"]["status"] == 200 and "Success" in steps["after"]["body"]
        listing = net2.ndsctl("json")
        assert '"state":"Authenticated"' in listing.replace(" ", "")
        # Its last sign of life, as the sign-in visits read it (portal/signin_visits.py): today's.
        (active,) = parse_ndsctl_clients(listing).values()
        assert active.date() == system_utcnow().date() or active.date() == (system_utcnow() - ONE_DAY).date()


def test_level2_link_opened_by_a_second_browser_is_refused(net2, tmp_path):
    args, env = portal(tmp_path)
    with footfall_process(args, env, prefix=["ip", "netns", "exec", net2.gw]):
        nds.start_opennds(net2, FASKEY, level=2)
        answer = nds.run_client(net2, "replay", PROBE)
        assert answer["first"] == 200 and answer["second"] == 400, answer
        assert "This sign-in link is not valid" in answer["second_body"]


def test_forged_fas_gets_a_clear_error(net2, tmp_path):
    args, env = portal(tmp_path, default_language="vi")
    with footfall_process(args, env, prefix=["ip", "netns", "exec", net2.gw]):
        answer = net2.client("http", f"{PORTAL}/fas/?fas=aGlkPW5vcGU=&iv=0123456789abcdef")
        assert answer["status"] == 400
        assert "không hợp lệ" in answer["body"]  # the store's default language: Vietnamese


def test_level1_works_only_when_the_setting_says_so(net1, tmp_path):
    args, env = portal(tmp_path / "strict")  # default: level 2, so a level-1 redirect is refused
    with footfall_process(args, env, prefix=["ip", "netns", "exec", net1.gw]):
        net1.start_opennds(FASKEY)  # the daemon at fas_secure_enabled 1
        before = net1.client("http", PROBE)
        refused = net1.client("http", before["location"])
        assert refused["status"] == 400, refused
    args, env = portal(tmp_path / "level1", opennds_secure_level="1")
    with footfall_process(args, env, prefix=["ip", "netns", "exec", net1.gw]):
        steps = net1.client("fas-signin", PROBE, "level1.visitor@example.com")
        assert steps["fas_page"]["status"] == 200 and steps["submit"]["status"] == 303, steps
        assert steps["auth"]["location"].startswith(f"{PORTAL}/online"), steps
        assert net1.client("http", PROBE)["status"] == 200


def test_level3_authmon_polls_footfall_over_https_and_lets_the_client_out(net3, tmp_path):
    ca, cert, key = nds.make_ca(tmp_path)
    # The TLS front relays from the gateway's loopback: that is where authmon's polls come from.
    args, env = portal(tmp_path, opennds_secure_level="3", opennds_authmon_networks="127.0.0.1/32",
                       portal_url=f"https://{GW_GUEST}:{nds.TLS_PORT}")
    with footfall_process(args, env, prefix=["ip", "netns", "exec", net3.gw]):
        nds.start_tls_front(net3, cert, key)
        nds.start_opennds(net3, FASKEY, level=3, ca_file=ca)
        assert nds.wait_for_log(net3, "authmon pid is"), "authmon did not start"
        steps = nds.run_client(net3, "signin", PROBE, "level3.visitor@example.com", str(ca))
        assert steps["fas_url"].startswith(f"https://{GW_GUEST}:{nds.TLS_PORT}/fas/?fas="), steps
        assert steps["fas_page"]["status"] == 200, steps
        assert steps["submit"] == {"status": 303, "location": "/fas/wait", "error": None}
        # The wait page reloaded until authmon ran `ndsctl auth <rhid>` and acknowledged it.
        assert steps["wait"]["statuses"][-1] == 303 and steps["wait"]["location"].startswith("/online"), steps
        assert steps["after"]["status"] == 200 and "Success" in steps["after"]["body"]
        assert '"state":"Authenticated"' in net3.ndsctl("json").replace(" ", "")
