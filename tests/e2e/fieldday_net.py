"""The field day's network: the DHCP harness's guest LAN (dnsmasq from the deploy template, one
namespace per phone) with an uplink to "the internet" and a back-office LAN for the manager.

    phone 0..n (eth0, udhcpc) ─┐                                    net: 192.168.1.254, 11.22.33.44 (HTTP)
                               ├─ guest0 10.79.0.1 │ up0 192.168.1.1 ──┘
    (ports isolated, ap_isolate)  gateway           │ office0 192.168.50.1 ── office: 192.168.50.10

The central store runs in the test's own namespace (it needs the throwaway PostgreSQL on
loopback); a relay (fieldday_relay.py) gives it an address on the gateway's loopback, the only
place `sync_allow_http` lets the appliance speak plain HTTP to. Everything is torn down by
close(), even after a failure.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.dhcp_lan import GW, TRY_SECONDS, TRIES, DhcpLan
from tests.e2e.netns import HERE, NET

UP_GW, UP_ROUTER = "192.168.1.1", "192.168.1.254"
OFFICE_GW, MANAGER = "192.168.50.1", "192.168.50.10"
OFFICE_NET = "192.168.50.0/24"
PORTAL = f"http://{GW}:8080"


def random_mac(rng: random.Random) -> str:
    """A phone's private (randomized) address: locally administered, unicast."""
    first = (rng.randrange(256) | 0x02) & 0xFE
    return ":".join(f"{b:02x}" for b in [first, *(rng.randrange(256) for _ in range(5))])


class FieldNet(DhcpLan):
    def __init__(self, workdir: Path, phones: int):
        super().__init__(workdir, phones)
        tag = self.gw[len("ffdg"):]
        self.net, self.office = f"ffdn{tag}", f"ffdo{tag}"
        self.procs: list[subprocess.Popen] = []

    def build(self, macs: list[str]) -> None:  # type: ignore[override]
        self._netns(self.gw)
        self.sh("ip", "link", "add", "guest0", "type", "bridge", "stp_state", "0", "forward_delay", "0", ns=self.gw)
        self.sh("ip", "addr", "add", f"{GW}/24", "dev", "guest0", ns=self.gw)
        self.sh("ip", "link", "set", "guest0", "up", ns=self.gw)
        for i, (ns, mac) in enumerate(zip(self.phones, macs)):
            self._plug(ns, f"p{i}", mac)
            self.sh("ip", "link", "set", f"p{i}", "type", "bridge_slave", "isolated", "on", ns=self.gw)
        for ns, peer, gw_dev, gw_ip, ip in ((self.net, "eth0", "up0", UP_GW, UP_ROUTER),
                                            (self.office, "eth0", "office0", OFFICE_GW, MANAGER)):
            self._netns(ns)
            self.sh("ip", "link", "add", gw_dev, "netns", self.gw, "type", "veth", "peer", "name", peer, "netns", ns)
            self.sh("ip", "addr", "add", f"{gw_ip}/24", "dev", gw_dev, ns=self.gw)
            self.sh("ip", "addr", "add", f"{ip}/24", "dev", peer, ns=ns)
            self.sh("ip", "link", "set", gw_dev, "up", ns=self.gw)
            self.sh("ip", "link", "set", peer, "up", ns=ns)
        self.sh("ip", "addr", "add", f"{NET}/32", "dev", "lo", ns=self.net)
        self.sh("ip", "route", "add", "10.79.0.0/24", "via", UP_GW, ns=self.net)
        self.sh("ip", "route", "add", "default", "via", UP_ROUTER, ns=self.gw)
        self.sh("ip", "route", "add", "default", "via", OFFICE_GW, ns=self.office)
        self.sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=self.gw)

    def spawn(self, *cmd: str, ns: str | None, log: str, env: dict | None = None) -> subprocess.Popen:
        out = open(self.workdir / log, "ab")
        prefix = ["ip", "netns", "exec", ns] if ns else []
        proc = subprocess.Popen([*prefix, *cmd], stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        out.close()
        self.procs.append(proc)
        return proc

    def wait_log(self, log: str, text: str, proc: subprocess.Popen, timeout: float = 30) -> None:
        path = self.workdir / log
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and text in path.read_text(errors="replace"):
                return
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"{log}: no {text!r} (exit {proc.poll()}):\n{path.read_text(errors='replace')[-3000:] if path.exists() else ''}")

    def start_internet(self) -> None:
        proc = self.spawn(sys.executable, str(HERE / "internet.py"), str(self.workdir / "internet-hits.jsonl"), NET,
                          ns=self.net, log="internet.log")
        self.wait_log("internet.log", "ready", proc)

    def relay(self, listen_port: int, target_port: int) -> None:
        proc = self.spawn(sys.executable, str(HERE / "fieldday_relay.py"), self.gw, str(listen_port), str(target_port),
                          ns=None, log="relay.log")
        self.wait_log("relay.log", "ready", proc)

    def dhcp(self, ns: str) -> str | None:
        """udhcpc in one phone (address and default route set by the script); its address or None."""
        lease = self.workdir / f"{ns}.lease"
        lease.unlink(missing_ok=True)
        subprocess.run(["ip", "netns", "exec", ns, "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", str(TRIES),
                        "-T", str(TRY_SECONDS), "-s", str(HERE / "udhcpc.script")], capture_output=True,
                       timeout=TRIES * TRY_SECONDS + 20, env={**os.environ, "FF_LEASE_FILE": str(lease)})
        fields = dict(line.split("=", 1) for line in lease.read_text().splitlines()) if lease.exists() else {}
        return fields.get("ip") or None

    def link(self, ns: str, up: bool, mac: str | None = None) -> None:
        """A phone leaves (link down, address gone) or comes back, maybe with a new MAC."""
        if not up:
            self.sh("ip", "-4", "addr", "flush", "dev", "eth0", ns=ns)
            self.sh("ip", "link", "set", "eth0", "down", ns=ns)
            return
        if mac:
            self.sh("ip", "link", "set", "eth0", "address", mac, ns=ns)
        self.sh("ip", "link", "set", "eth0", "up", ns=ns)

    def close(self) -> None:
        from tests.livecheck import terminate
        for proc in reversed(self.procs):
            terminate(proc)
        super().close()
