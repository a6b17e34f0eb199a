"""DHCP bursts, printed as JSON (issue 13): phones asking for a lease at the same moment, with
the deploy template's dnsmasq (no-ping, dhcp-authoritative) against the template without them
(dnsmasq's ping check before each offer), measured in the same run, in namespaces (root).

    sudo .venv/bin/python tests/perf/bench_dhcp.py [--phones 12] [--runs 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.e2e.dhcp_lan import TRIES, TRY_SECONDS, DhcpLan  # noqa: E402
from tests.e2e.netns import can_run  # noqa: E402


def burst(lan: DhcpLan, drop: tuple[str, ...]) -> dict:
    lan.forget_leases()
    lan.start_dnsmasq(drop=drop)
    started = time.monotonic()
    got = lan.ask_at_once()
    seconds = time.monotonic() - started
    lan.stop_dnsmasq()
    leased = [ip for ip in got.values() if ip]
    return {"leased": len(leased), "distinct": len(set(leased)), "seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--phones", type=int, default=12)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    ok, reason = can_run()
    if not ok:
        print(json.dumps({"error": reason}))
        sys.exit(1)
    lan = DhcpLan(Path(tempfile.mkdtemp(prefix="ff-dhcp-")), args.phones)
    try:
        lan.build()
        shipped = [burst(lan, ()) for _ in range(args.runs)]
        baseline = [burst(lan, ("no-ping", "dhcp-authoritative")) for _ in range(args.runs)]
    finally:
        lan.close()
    result = {
        "phones": args.phones, "udhcpc_budget_s": TRIES * TRY_SECONDS, "arp_check": True,
        "template": shipped, "baseline_ping_check": baseline,
        "template_median_s": statistics.median(r["seconds"] for r in shipped),
        "baseline_median_s": statistics.median(r["seconds"] for r in baseline),
    }
    result["goals"] = {
        "every phone leased, every run": all(r["leased"] == r["distinct"] == args.phones for r in shipped),
        "all within 10 s": max(r["seconds"] for r in shipped) <= 10,
        "better than the ping check": min(r["leased"] for r in shipped) > max(r["leased"] for r in baseline)
        or result["template_median_s"] < result["baseline_median_s"],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
