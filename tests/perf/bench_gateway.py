"""Gateway figures, printed as JSON (issue 3), on a guest network built in namespaces (root):

- login-to-online with the nftables driver, guest isolation in place: from the consent submit
  until the client's next request reaches the "internet" namespace, median and p99 over N runs;
  its baseline is the same flow in the same namespaces with the `null` gateway (no gate at all:
  the portal's own share), so the difference is what the gate costs;
- the same flow through the real openNDS 9.10 with Footfall as its FAS, and `ndsctl auth` to
  reachable, measured in the same run where openNDS is installed;
- the time to restore 10,000 authorizations from SQLite into the kernel set at start-up.

    sudo .venv/bin/python tests/perf/bench_gateway.py [--runs 50]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.e2e.netns import (CLIENT_MAC, GW_GUEST, NET, STORE_HOST, STORE_PORTS, STORE_PRINTER, can_run,  # noqa: E402
                             portal_command, topology)
from tests.e2e.opennds_harness import start_opennds  # noqa: E402
from tests.livecheck import footfall_process  # noqa: E402

PORTAL = f"http://{GW_GUEST}:8080"
FASKEY = "benchFasKey01234"
RESTORE = r'''
import datetime, sys, time, json, tempfile
sys.path.insert(0, sys.argv[1])
n = int(sys.argv[2])
from portal.db import database, init_db
from portal.models import Authorization, Device, utcnow
from portal import restore_grants
from portal.gateway.nftables import NftablesGateway
init_db(tempfile.mkdtemp() + "/f.db")
now = utcnow()
with database.atomic():
    Device.insert_many([{"mac": "02:%02x:%02x:%02x:00:01" % (i >> 16, (i >> 8) & 255, i & 255)} for i in range(n)]).execute()
    ids = [d.id for d in Device.select(Device.id)]
    Authorization.insert_many([{"device": i, "ip": None, "expires_at": now + datetime.timedelta(seconds=600 + i % 3000)}
                               for i in ids]).execute()
gw = NftablesGateway("veth0", 8080)
start = time.perf_counter()
restored = restore_grants(gw)
elapsed = time.perf_counter() - start
print(json.dumps({"authorizations": restored, "restore_s": round(elapsed, 3), "in_kernel": len(gw.authorized())}))
'''


def summary(timings: list[float]) -> dict:
    timings = sorted(timings)
    return {"runs": len(timings), "median_ms": round(statistics.median(timings), 2),
            "p99_ms": round(timings[max(0, int(len(timings) * 0.99) - 1)], 2), "max_ms": round(timings[-1], 2)}


def login_flow(workdir: Path, runs: int, gateway: str) -> dict:
    with topology(workdir) as net:
        net.start_internet()
        net.start_dnsmasq(PORTAL)
        net.start_store_lan()
        net.dhcp()
        cmd, env = portal_command(workdir / "data", gateway=gateway)
        env["FOOTFALL_RATE_LIMIT_COUNT"] = "1000000"  # one device signs in many times on purpose
        env["FOOTFALL_GUEST_ALLOWED_SERVICES"] = f"{STORE_PRINTER}:631"
        with footfall_process(cmd[3:], env, prefix=["ip", "netns", "exec", net.gw]):
            out = net.client("login-to-online", PORTAL, f"http://{NET}/generate_204", str(runs), timeout=600)
            result = summary(out["timings_ms"])
            if gateway == "nftables":
                result["isolation"] = isolation_in_place(net)
    return result


def isolation_in_place(net) -> dict:
    """Proof that the figures were taken with the isolation rules loaded and working."""
    table = net.nft("list", "table", "inet", "footfall")
    assert net.client("signin", PORTAL, "isolation.check@example.com")["status"] == 303
    store = net.client("tcp", STORE_HOST, str(STORE_PORTS[STORE_HOST]))
    return {"rules_loaded": all(f"set {name}" in table for name in ("refused4", "refused6", "store4", "allowed4", "dns_clients"))
            and "jump from_guests" in table,
            "store_lan_refused": store.get("error") == "ConnectionRefusedError"}


def opennds_flow(workdir: Path, runs: int) -> dict:
    probe = "http://captive.apple.com/hotspot-detect.html"
    with topology(workdir) as net:
        net.start_internet()
        net.start_dnsmasq(PORTAL)
        net.dhcp()
        cmd, env = portal_command(workdir / "data", gateway="opennds", faskey=FASKEY)
        env["FOOTFALL_RATE_LIMIT_COUNT"] = "1000000"
        with footfall_process(cmd[3:], env, prefix=["ip", "netns", "exec", net.gw]):
            start_opennds(net, FASKEY, level=2)  # the default FAS level: an encrypted query
            flow, ndsctl = [], []
            for i in range(runs):
                steps = net.client("fas-signin", probe, f"nds{i}@example.com", "wait", timeout=60)
                assert "submit_to_online_ms" in steps, steps
                flow.append(steps["submit_to_online_ms"])
                net.ndsctl("deauth", CLIENT_MAC)
                time.sleep(0.2)
            for _ in range(min(runs, 20)):
                net.client("http", probe)  # openNDS authenticates only clients it holds captive
                start = time.perf_counter()
                net.ndsctl("auth", CLIENT_MAC)
                reach = net.client("wait-reachable", probe)
                ndsctl.append((time.perf_counter() - start) * 1000)
                assert "reachable_ms" in reach, reach
                net.ndsctl("deauth", CLIENT_MAC)
                time.sleep(0.2)
    return {"fas_submit_to_online": summary(flow), "ndsctl_auth_to_reachable": summary(ndsctl)}


def restore_time(n: int) -> dict:
    ns = "ffbenchrestore"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1"], check=True)
        done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", RESTORE, str(ROOT), str(n)],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
        return json.loads(done.stdout)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--restore", type=int, default=10_000)
    args = parser.parse_args()
    ok, reason = can_run()
    if not ok:
        print(json.dumps({"error": reason}))
        return 2
    result: dict = {"benchmark": "gateway"}
    with tempfile.TemporaryDirectory() as tmp:
        result["nftables_login_to_online"] = login_flow(Path(tmp) / "nft", args.runs, "nftables")
    with tempfile.TemporaryDirectory() as tmp:
        result["baseline_null_gateway_login_to_online"] = login_flow(Path(tmp) / "null", args.runs, "null")
    nft, base = result["nftables_login_to_online"], result["baseline_null_gateway_login_to_online"]
    result["gate_cost_ms"] = {"median": round(nft["median_ms"] - base["median_ms"], 2),
                              "p99": round(nft["p99_ms"] - base["p99_ms"], 2)}
    if shutil.which("opennds"):
        with tempfile.TemporaryDirectory() as tmp:
            result["opennds"] = opennds_flow(Path(tmp) / "nds", args.runs)
    else:
        result["opennds"] = "not installed (apt-get install opennds)"
    result["restore"] = restore_time(args.restore)
    isolated = nft["isolation"]["rules_loaded"] and nft["isolation"]["store_lan_refused"]
    result["goals"] = {"median<=20ms": nft["median_ms"] <= 20, "p99<=50ms": nft["p99_ms"] <= 50,
                       "with_isolation_rules": isolated}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
