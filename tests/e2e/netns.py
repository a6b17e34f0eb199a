"""A guest network in three network namespaces, built and torn down by the test itself.

    client (eth0, DHCP)  ──  gateway (guest0 | up0)  ──  internet (eth0)
      10.77.0.x/24             10.77.0.1   10.78.0.1       10.78.0.2
      fd77::10/64              fd77::1     fd78::1         fd78::2

The gateway runs dnsmasq (DHCP with option 114, DNS that sends the probe hosts to the internet
namespace) and whatever portal the test starts. Nothing leaves these namespaces.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from tests.livecheck import terminate

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
GW_GUEST, GW_UP, NET = "10.77.0.1", "10.78.0.1", "10.78.0.2"
GW6_GUEST, CLIENT6, NET6 = "fd77::1", "fd77::10", "fd78::2"
CLIENT_MAC = "02:11:22:33:44:55"
PROBE_HOSTS = ("captive.apple.com", "connectivitycheck.gstatic.com", "www.msftconnecttest.com",
               "detectportal.firefox.com", "example.com")
TOOLS = ("ip", "nft", "dnsmasq", "udhcpc")
OPENNDS_CONF = """GatewayInterface guest0
GatewayName footfall-test
gatewayport {gateway_port}
fasport {fas_port}
fasremoteip {gw}
faspath /fas/
fas_secure_enabled 1
faskey {faskey}
FirewallRuleSet authenticated-users {{
}}
FirewallRuleSet preauthenticated-users {{
}}
FirewallRuleSet users-to-router {{
    FirewallRule allow udp port 53
    FirewallRule allow tcp port 53
    FirewallRule allow udp port 67
    FirewallRule allow tcp port {fas_port}
}}
"""
_counter = itertools.count()


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def can_run() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "network namespace tests need root"
    missing = missing_tools()
    if missing:
        return False, f"missing tools: {', '.join(missing)}"
    return True, ""


class Topology:
    def __init__(self, workdir: Path):
        tag = f"{os.getpid() % 100000}x{next(_counter)}"
        self.cli, self.gw, self.net = f"ffc{tag}", f"ffg{tag}", f"ffn{tag}"
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen] = []
        self.hits_file = workdir / "internet-hits.jsonl"
        self.lease_file = workdir / "lease.txt"
        self.resolv_dir = Path("/etc/netns") / self.cli

    # -- plumbing -------------------------------------------------------------------------------

    def sh(self, *cmd: str, ns: str | None = None, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
        full = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
        done = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(full)} failed: {done.stderr.strip()}")
        return done

    def spawn(self, *cmd: str, ns: str, env: dict | None = None, log: str = "proc.log") -> subprocess.Popen:
        out = open(self.workdir / log, "ab")
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
        out.close()
        self.procs.append(proc)
        return proc

    def build(self) -> None:
        for ns in (self.cli, self.gw, self.net):
            self.sh("ip", "netns", "add", ns)
            self.sh("ip", "link", "set", "lo", "up", ns=ns)
        self.sh("ip", "link", "add", "eth0", "netns", self.cli, "type", "veth", "peer", "name", "guest0", "netns", self.gw)
        self.sh("ip", "link", "add", "up0", "netns", self.gw, "type", "veth", "peer", "name", "eth0", "netns", self.net)
        self.sh("ip", "link", "set", "eth0", "address", CLIENT_MAC, ns=self.cli)
        for ns, dev in ((self.cli, "eth0"), (self.gw, "guest0"), (self.gw, "up0"), (self.net, "eth0")):
            self.sh("ip", "link", "set", dev, "up", ns=ns)
        self.sh("ip", "addr", "add", f"{GW_GUEST}/24", "dev", "guest0", ns=self.gw)
        self.sh("ip", "addr", "add", f"{GW_UP}/24", "dev", "up0", ns=self.gw)
        self.sh("ip", "addr", "add", f"{NET}/24", "dev", "eth0", ns=self.net)
        self.sh("ip", "route", "add", "10.77.0.0/24", "via", GW_UP, ns=self.net)
        # IPv6 everywhere, so that a leak would have a path to take.
        self.sh("ip", "addr", "add", f"{GW6_GUEST}/64", "dev", "guest0", "nodad", ns=self.gw)
        self.sh("ip", "addr", "add", "fd78::1/64", "dev", "up0", "nodad", ns=self.gw)
        self.sh("ip", "addr", "add", f"{NET6}/64", "dev", "eth0", "nodad", ns=self.net)
        self.sh("ip", "addr", "add", f"{CLIENT6}/64", "dev", "eth0", "nodad", ns=self.cli)
        self.sh("ip", "-6", "route", "add", "default", "via", GW6_GUEST, ns=self.cli)
        self.sh("ip", "-6", "route", "add", "fd77::/64", "via", "fd78::1", ns=self.net)
        self.sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=self.gw)
        self.sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", ns=self.gw)
        # The client resolves through the gateway (ip netns exec bind-mounts this file).
        self.resolv_dir.mkdir(parents=True, exist_ok=True)
        (self.resolv_dir / "resolv.conf").write_text(f"nameserver {GW_GUEST}\n")

    def start_internet(self) -> None:
        proc = self.spawn(sys.executable, str(HERE / "internet.py"), str(self.hits_file), NET, NET6,
                          ns=self.net, log="internet.log")
        self._wait(lambda: (self.workdir / "internet.log").exists() and b"ready" in (self.workdir / "internet.log").read_bytes(),
                   proc, "internet server")

    @property
    def nds_tmp(self) -> Path:
        """openNDS's private /tmp (it hard-codes /tmp/dhcp.leases, /tmp/ndsctl.sock...)."""
        path = self.workdir / "nds-tmp"
        path.mkdir(exist_ok=True)
        return path

    def start_opennds(self, faskey: str, fas_port: int = 8080, gateway_port: int = 2050) -> subprocess.Popen:
        """The real openNDS daemon on guest0, with Footfall as its FAS (fas_secure_enabled 1)."""
        bindir = self.nds_tmp / "bin"
        bindir.mkdir(exist_ok=True)
        # openNDS 9.10 drives iptables with the legacy backend; Debian's default is iptables-nft.
        for tool in ("iptables", "iptables-save", "iptables-restore"):
            link = bindir / tool
            if not link.exists():
                link.symlink_to(shutil.which(tool.replace("iptables", "iptables-legacy")))
        (self.nds_tmp / "opennds.conf").write_text(OPENNDS_CONF.format(
            faskey=faskey, fas_port=fas_port, gateway_port=gateway_port, gw=GW_GUEST))
        # On generic Linux openNDS rewrites /etc/dnsmasq.conf and /etc/hosts: it gets private copies
        # (bind mounts in its own mount namespace), so the host's files never change.
        script = ('set -e; for f in dnsmasq.conf hosts; do touch "$0/etc-$f"; '
                  '[ -f "/etc/$f" ] && cp "/etc/$f" "$0/etc-$f"; touch "/etc/$f"; mount --bind "$0/etc-$f" "/etc/$f"; done; '
                  'mount --bind "$0" /tmp; exec opennds -f -d 1 -c /tmp/opennds.conf')
        proc = self.spawn("sh", "-c", script, str(self.nds_tmp), ns=self.gw,
                          env={"PATH": f"/tmp/bin:{os.environ['PATH']}"}, log="opennds.log")
        self._wait(lambda: "openNDS is now running" in (self.workdir / "opennds.log").read_text(errors="replace"),
                   proc, "opennds", timeout=30)
        self.opennds = proc
        return proc

    def ndsctl(self, *args: str) -> str:
        """ndsctl in openNDS's own mount and network namespaces (its socket is in its private /tmp)."""
        done = subprocess.run(["nsenter", "-t", str(self.opennds.pid), "-m", "-n", "ndsctl", *args],
                              capture_output=True, text=True, timeout=20)
        return done.stdout + done.stderr

    def start_dnsmasq(self, portal_url: str) -> None:
        args = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces",
                "--interface=guest0", "--except-interface=lo", f"--listen-address={GW_GUEST}",
                "--dhcp-range=10.77.0.50,10.77.0.150,255.255.255.0,1h", f"--dhcp-option=3,{GW_GUEST}",
                f"--dhcp-option=6,{GW_GUEST}", f"--dhcp-option=114,{portal_url}/api/captive",
                f"--dhcp-leasefile={self.nds_tmp / 'dhcp.leases'}", f"--pid-file={self.workdir / 'dnsmasq.pid'}",
                "--log-facility=-", "--user=root", "--group=root"]
        args += [f"--address=/{host}/{NET}" for host in PROBE_HOSTS]
        proc = self.spawn(*args, ns=self.gw, log="dnsmasq.log")
        self._wait(lambda: "started" in (self.workdir / "dnsmasq.log").read_text(errors="replace"), proc, "dnsmasq")

    def dhcp(self) -> dict[str, str]:
        """A real DHCP exchange from the client; returns what the lease said."""
        done = subprocess.run(["ip", "netns", "exec", self.cli, "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5",
                               "-T", "1", "-O", "114", "-s", str(HERE / "udhcpc.script")],
                              capture_output=True, text=True, timeout=30,
                              env={**os.environ, "FF_LEASE_FILE": str(self.lease_file)})
        if done.returncode != 0 or not self.lease_file.exists():
            raise RuntimeError(f"DHCP failed: {done.stdout}{done.stderr}")
        return dict(line.split("=", 1) for line in self.lease_file.read_text().splitlines() if "=" in line)

    def client(self, *args: str, timeout: float = 60) -> dict:
        done = self.sh(sys.executable, str(HERE / "client.py"), *args, ns=self.cli, timeout=timeout)
        return json.loads(done.stdout)

    def hits(self) -> list[dict]:
        if not self.hits_file.exists():
            return []
        return [json.loads(line) for line in self.hits_file.read_text().splitlines() if line.strip()]

    def nft(self, *args: str) -> str:
        return self.sh("nft", *args, ns=self.gw).stdout

    @staticmethod
    def _wait(ready, proc, what: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}")
            time.sleep(0.05)
        raise RuntimeError(f"{what} did not start in {timeout}s")

    def close(self) -> None:
        for proc in reversed(self.procs):
            terminate(proc)
        for ns in (self.cli, self.gw, self.net):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(self.resolv_dir, ignore_errors=True)


@contextmanager
def topology(workdir: Path):
    topo = Topology(workdir)
    try:
        topo.build()
        yield topo
    finally:
        topo.close()


def portal_command(data_dir: Path, session_seconds: int = 3600, port: int = 8080,
                   gateway: str = "nftables", faskey: str = "") -> tuple[list[str], dict[str, str]]:
    env = {"FOOTFALL_DATA_DIR": str(data_dir), "FOOTFALL_GATEWAY": gateway, "FOOTFALL_GUEST_INTERFACE": "guest0",
           "FOOTFALL_OPENNDS_FASKEY": faskey,
           "FOOTFALL_LISTEN_HOST": "0.0.0.0", "FOOTFALL_LISTEN_PORT": str(port),
           "FOOTFALL_PORTAL_URL": f"http://{GW_GUEST}:{port}", "FOOTFALL_SESSION_SECONDS": str(session_seconds),
           "FOOTFALL_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    return [sys.executable, "-m", "portal", "portal"], env
