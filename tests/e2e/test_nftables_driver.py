"""The nftables driver's transactions, in a namespace of its own, beside a table it must not touch."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from tests.conftest import require
from tests.e2e.netns import ROOT, can_run

OPS = r'''
import datetime, json, sys
sys.path.insert(0, sys.argv[1])
from portal.gateway import Grant
from portal.gateway.isolation import Isolation, parse_networks, parse_services
from portal.gateway.nftables import NftablesGateway
now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
isolation = Isolation("dummy1", parse_networks("198.51.100.0/24, 81.0.0.0/29"), parse_services("192.168.1.20:631, [fd00::5]:443"))
gw = NftablesGateway("dummy0", 8080, isolation=isolation)
out = {}
out["restored"] = gw.restore([Grant("02:00:00:00:00:01", None, now + datetime.timedelta(seconds=600)),
                              Grant("02:00:00:00:00:02", None, now - datetime.timedelta(seconds=5))])
out["after_restore"] = gw.authorized()
gw.authorize(Grant("02:00:00:00:00:03", "10.0.0.3", now + datetime.timedelta(seconds=100)))
gw.authorize(Grant("02:00:00:00:00:03", "10.0.0.3", now + datetime.timedelta(seconds=3000)))  # extend
gw.revoke("02:00:00:00:00:01")
gw.revoke("02:00:00:00:00:09")  # absent: still fine
out["after_changes"] = gw.authorized()
try:
    gw.authorize(Grant("not-a-mac", None, now))
except Exception as exc:
    out["bad_mac"] = type(exc).__name__
print(json.dumps(out))
'''


@pytest.fixture
def ns():
    ok, reason = can_run()
    require(ok, reason)
    name = f"ffd{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "add", "dummy0", "type", "veth", "peer", "name", "dummy1"], check=True)
        # The "uplink": its subnets are read when the table is built.
        subprocess.run(["ip", "-n", name, "addr", "add", "81.0.0.1/29", "dev", "dummy1"], check=True)
        subprocess.run(["ip", "-n", name, "addr", "add", "2a0c:ff00:1::1/64", "dev", "dummy1", "nodad"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def nft(ns, *args):
    return subprocess.run(["ip", "netns", "exec", ns, "nft", *args], check=True, capture_output=True, text=True).stdout


def test_transactions_and_other_tables_untouched(ns):
    nft(ns, "add table inet host; add chain inet host input { type filter hook input priority 0; policy accept; }; "
            "add rule inet host input tcp dport 22 accept")
    before = nft(ns, "list", "table", "inet", "host")
    done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", OPS, str(ROOT)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["restored"] == 1
    assert set(out["after_restore"]) == {"02:00:00:00:00:01"}  # the expired grant is not restored
    assert 590 <= out["after_restore"]["02:00:00:00:00:01"] <= 600
    assert set(out["after_changes"]) == {"02:00:00:00:00:03"}
    assert out["after_changes"]["02:00:00:00:00:03"] > 2900  # extended, not the first 100 s
    assert out["bad_mac"] == "GatewayError"
    assert nft(ns, "list", "table", "inet", "host") == before
    ruleset = nft(ns, "list", "table", "inet", "footfall")
    assert 'iifname "dummy0" ether saddr != @authorized tcp dport 80 redirect to :8080' in ruleset
    sets = {name: nft(ns, "list", "set", "inet", "footfall", name) for name in ("store4", "store6", "allowed4", "allowed6")}
    # The uplink's subnets (81.0.0.0/29 also named by the owner: merged) and the owner's network.
    assert "elements = { 81.0.0.0/29, 198.51.100.0/24 }" in " ".join(sets["store4"].split()), sets["store4"]
    assert "elements = { 2a0c:ff00:1::/64 }" in " ".join(sets["store6"].split())
    assert "elements = { 192.168.1.20 . 631 }" in " ".join(sets["allowed4"].split())
    assert "elements = { fd00::5 . 443 }" in " ".join(sets["allowed6"].split())
