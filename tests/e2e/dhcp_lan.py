"""A guest LAN for DHCP tests: dnsmasq from the deploy template and many phones asking at once.

    phone 0 (eth0) ─┐
    phone 1 (eth0) ─┼─ bridge guest0 10.79.0.1/24, dnsmasq  (gateway namespace)
    ...            ─┘
    squatter       ─  a host with a static address inside the lease range (optional)

Every phone is a namespace of its own running busybox udhcpc, with a fixed budget of tries (no
test waits on a clock of its own). Everything is torn down by close(), even after a failure.
"""
from __future__ import annotations

import itertools
import os
import re
import subprocess
import time
from pathlib import Path

from tests.e2e.netns import HERE, ROOT
from tests.livecheck import terminate

GW, PREFIX = "10.79.0.1", "10.79.0"
TEMPLATE = ROOT / "deploy" / "dnsmasq-footfall.conf.in"
# udhcpc's budget: DISCOVERs 3 s apart, 3 of them, then give up (-n). Phones retry about so.
TRIES, TRY_SECONDS = 3, 3
_counter = itertools.count()


def render(first: str, last: str, leases: Path, drop: tuple[str, ...] = ()) -> str:
    """The deploy template as deploy/install.sh renders it, with the lease file moved to the
    test's directory (the one line changed); lines equal to one of `drop` are left out (a
    benchmark's baseline)."""
    values = {"GUEST_IF": "guest0", "GUEST_IP": GW, "DHCP_FIRST": first, "DHCP_LAST": last,
              "PORTAL_URL": f"http://{GW}:8080", "HOST_RECORD": "# (no portal host name: HTTPS is off)"}
    text = re.sub(r"@([A-Z_]+)@", lambda m: values[m.group(1)], TEMPLATE.read_text())
    text, n = re.subn(r"(?m)^dhcp-leasefile=.*$", f"dhcp-leasefile={leases}", text)
    assert n == 1, "the template no longer names its lease file"
    return "".join(line for line in text.splitlines(keepends=True) if line.strip() not in drop)


class DhcpLan:
    def __init__(self, workdir: Path, phones: int):
        tag = f"{os.getpid() % 100000}x{next(_counter)}"
        self.gw = f"ffdg{tag}"
        self.phones = [f"ffd{tag}p{i}" for i in range(phones)]
        self.squatter = f"ffd{tag}sq"
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.leases = workdir / "dnsmasq.leases"
        self.namespaces: list[str] = []
        self.dnsmasq: subprocess.Popen | None = None

    def sh(self, *cmd: str, ns: str | None = None) -> str:
        full = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
        done = subprocess.run(full, capture_output=True, text=True, timeout=20)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(full)} failed: {done.stderr.strip()}")
        return done.stdout

    def _netns(self, name: str) -> None:
        self.sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        self.sh("ip", "link", "set", "lo", "up", ns=name)

    def _plug(self, ns: str, port: str, mac: str) -> None:
        """A cable from namespace `ns` (eth0) to the gateway's bridge (port `port`)."""
        self._netns(ns)
        self.sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", self.gw)
        self.sh("ip", "link", "set", "eth0", "address", mac, "up", ns=ns)
        self.sh("ip", "link", "set", port, "master", "guest0", "up", ns=self.gw)

    def build(self, squatter_ip: str | None = None) -> None:
        self._netns(self.gw)
        self.sh("ip", "link", "add", "guest0", "type", "bridge", "stp_state", "0", "forward_delay", "0", ns=self.gw)
        self.sh("ip", "addr", "add", f"{GW}/24", "dev", "guest0", ns=self.gw)
        self.sh("ip", "link", "set", "guest0", "up", ns=self.gw)
        for i, ns in enumerate(self.phones):
            self._plug(ns, f"p{i}", f"02:d0:00:00:{i // 256:02x}:{i % 256:02x}")
        if squatter_ip:
            self._plug(self.squatter, "sq", "02:d0:ff:00:00:01")
            self.sh("ip", "addr", "add", f"{squatter_ip}/24", "dev", "eth0", ns=self.squatter)

    def start_dnsmasq(self, first: str = f"{PREFIX}.50", last: str = f"{PREFIX}.250", drop: tuple[str, ...] = ()) -> None:
        conf = self.workdir / "dnsmasq.conf"
        conf.write_text(render(first, last, self.leases, drop))
        log = self.workdir / "dnsmasq.log"
        out = open(log, "ab")
        # Test-only options on the command line: foreground, logs here, no upstream DNS, root.
        self.dnsmasq = subprocess.Popen(
            ["ip", "netns", "exec", self.gw, "dnsmasq", "--keep-in-foreground", f"--conf-file={conf}", "--no-resolv",
             "--no-hosts", f"--pid-file={self.workdir / 'dnsmasq.pid'}", "--log-facility=-", "--log-dhcp",
             "--user=root", "--group=root"], stdout=out, stderr=subprocess.STDOUT)
        out.close()
        deadline = time.monotonic() + 15
        while b"DHCP, IP range" not in log.read_bytes():
            if self.dnsmasq.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dnsmasq did not start:\n" + log.read_text(errors="replace"))
            time.sleep(0.05)

    def forget_leases(self) -> None:
        """A fresh lease database, and phones with no address (between benchmark runs)."""
        self.stop_dnsmasq()
        self.leases.unlink(missing_ok=True)
        for ns in self.phones:
            self.sh("ip", "-4", "addr", "flush", "dev", "eth0", ns=ns)

    def stop_dnsmasq(self) -> None:
        if self.dnsmasq is not None:
            terminate(self.dnsmasq)
            self.dnsmasq = None

    def ask_at_once(self, phones: list[str] | None = None, arp_check: bool = True) -> dict[str, str | None]:
        """Every phone runs udhcpc at the same moment; returns the address each one got (None: no
        lease within udhcpc's budget). With arp_check the phone probes the offered address first
        and declines it if someone answers (RFC 5227), as phones do."""
        phones = self.phones if phones is None else phones
        procs = {}
        for ns in phones:
            lease = self.workdir / f"{ns}.lease"
            lease.unlink(missing_ok=True)
            cmd = ["ip", "netns", "exec", ns, "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", str(TRIES),
                   "-T", str(TRY_SECONDS), "-s", str(HERE / "udhcpc.script"), *(["-a"] if arp_check else [])]
            procs[ns] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         env={**os.environ, "FF_LEASE_FILE": str(lease)})
        got: dict[str, str | None] = {}
        for ns, proc in procs.items():
            try:
                proc.wait(timeout=TRIES * TRY_SECONDS + 20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            lease = self.workdir / f"{ns}.lease"
            fields = dict(line.split("=", 1) for line in lease.read_text().splitlines()) if lease.exists() else {}
            got[ns] = fields.get("ip") or None
        return got

    def lease_db(self) -> dict[str, str]:
        """dnsmasq's lease file: MAC -> address."""
        if not self.leases.exists():
            return {}
        return {parts[1]: parts[2] for parts in (line.split() for line in self.leases.read_text().splitlines()) if len(parts) >= 3}

    def log(self) -> str:
        path = self.workdir / "dnsmasq.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        self.stop_dnsmasq()
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
