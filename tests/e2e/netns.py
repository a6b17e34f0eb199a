"""A guest network in four network namespaces, built and torn down by the test itself.

    client  (eth0, DHCP)   ─┐   gateway                      store LAN + internet (eth0)
      10.77.0.x, fd77::10   ├─  bridge guest0 │ up0    ──    192.168.1.254 fd78::fe  the store's router
    client2 (eth0, static) ─┘   10.77.0.1     │ 192.168.1.1  192.168.1.10  fd78::10  a NAS (TCP 445)
      10.77.0.20, fd77::20      fd77::1       │ fd78::1      192.168.1.20            a printer (TCP 631)
                                                             11.22.33.44 2a0c:ff00::44  "the internet"

The guest bridge's ports are isolated from each other, as hostapd's ap_isolate keeps WiFi
stations apart, so client-to-client traffic can only try the way through the gateway. The
gateway's default route goes through the store's router; the "internet" addresses are global
ones (the gate refuses every private range) that exist only in these namespaces. The gateway runs
dnsmasq (DHCP with option 114, DNS that sends the probe hosts to the internet namespace) and
whatever portal the test starts. Nothing leaves these namespaces.
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
GW_GUEST, GW_UP, STORE_ROUTER = "10.77.0.1", "192.168.1.1", "192.168.1.254"
UPLINK_NET = "192.168.1.0/24"
STORE_HOST, STORE_PRINTER = "192.168.1.10", "192.168.1.20"   # listening on STORE_PORTS
STORE_PORTS = {STORE_HOST: 445, STORE_PRINTER: 631}
NET, NET6 = "11.22.33.44", "2a0c:ff00::44"                   # the internet (HTTP 80, DNS 53)
GW6_GUEST, CLIENT6, GW6_UP, STORE_ROUTER6, STORE_HOST6 = "fd77::1", "fd77::10", "fd78::1", "fd78::fe", "fd78::10"
CLIENT_MAC = "02:11:22:33:44:55"
CLIENT2, CLIENT2_6, CLIENT2_MAC, CLIENT2_PORT = "10.77.0.20", "fd77::20", "02:11:22:33:44:66", 7000
GW_OTHER_PORT = 22  # a service of the appliance's own (think sshd), on every address
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
# A TCP service that logs who connected:  python -c LISTENER LOGFILE ADDR:PORT [ADDR:PORT...]
LISTENER = r'''
import json, socket, sys, threading
def serve(addr, port):
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    srv.bind((addr, port))
    srv.listen(64)
    while True:
        conn, peer = srv.accept()
        with open(sys.argv[1], "a") as fh:
            fh.write(json.dumps({"service": f"{addr}:{port}", "client": peer[0]}) + "\n")
        conn.close()
for spec in sys.argv[2:]:
    addr, port = spec.rsplit(":", 1)
    threading.Thread(target=serve, args=(addr.strip("[]"), int(port)), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
'''


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
        self.cli, self.cli2, self.gw, self.net = f"ffc{tag}", f"ffd{tag}", f"ffg{tag}", f"ffn{tag}"
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen] = []
        self.hits_file = workdir / "internet-hits.jsonl"
        self.lease_file = workdir / "lease.txt"
        self.resolv_dirs = [Path("/etc/netns") / ns for ns in (self.cli, self.cli2)]

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
        for ns in (self.cli, self.cli2, self.gw, self.net):
            self.sh("ip", "netns", "add", ns)
            self.sh("ip", "link", "set", "lo", "up", ns=ns)
        self.sh("ip", "link", "add", "guest0", "type", "bridge", ns=self.gw)
        for port, ns, mac in (("gp0", self.cli, CLIENT_MAC), ("gp1", self.cli2, CLIENT2_MAC)):
            self.sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", self.gw)
            self.sh("ip", "link", "set", "eth0", "address", mac, ns=ns)
            self.sh("ip", "link", "set", port, "master", "guest0", ns=self.gw)
            self.sh("ip", "link", "set", port, "type", "bridge_slave", "isolated", "on", ns=self.gw)  # ap_isolate
            self.sh("ip", "link", "set", port, "up", ns=self.gw)
        self.sh("ip", "link", "add", "up0", "netns", self.gw, "type", "veth", "peer", "name", "eth0", "netns", self.net)
        for ns, dev in ((self.cli, "eth0"), (self.cli2, "eth0"), (self.gw, "guest0"), (self.gw, "up0"), (self.net, "eth0")):
            self.sh("ip", "link", "set", dev, "up", ns=ns)
        addresses = ((self.gw, "guest0", f"{GW_GUEST}/24"), (self.gw, "up0", f"{GW_UP}/24"),
                     (self.cli2, "eth0", f"{CLIENT2}/24"),
                     (self.net, "eth0", f"{STORE_ROUTER}/24"), (self.net, "eth0", f"{STORE_HOST}/24"),
                     (self.net, "eth0", f"{STORE_PRINTER}/24"), (self.net, "lo", f"{NET}/32"))
        for ns, dev, address in addresses:
            self.sh("ip", "addr", "add", address, "dev", dev, ns=ns)
        # IPv6 everywhere, so that a leak would have a path to take.
        addresses6 = ((self.gw, "guest0", f"{GW6_GUEST}/64"), (self.gw, "up0", f"{GW6_UP}/64"),
                      (self.cli, "eth0", f"{CLIENT6}/64"), (self.cli2, "eth0", f"{CLIENT2_6}/64"),
                      (self.net, "eth0", f"{STORE_ROUTER6}/64"), (self.net, "eth0", f"{STORE_HOST6}/64"),
                      (self.net, "lo", f"{NET6}/128"))
        for ns, dev, address in addresses6:
            self.sh("ip", "addr", "add", address, "dev", dev, "nodad", ns=ns)
        self.sh("ip", "route", "add", "default", "via", STORE_ROUTER, ns=self.gw)
        self.sh("ip", "-6", "route", "add", "default", "via", STORE_ROUTER6, ns=self.gw)
        self.sh("ip", "route", "add", "10.77.0.0/24", "via", GW_UP, ns=self.net)
        self.sh("ip", "-6", "route", "add", "fd77::/64", "via", GW6_UP, ns=self.net)
        for ns in (self.cli, self.cli2):
            self.sh("ip", "-6", "route", "add", "default", "via", GW6_GUEST, ns=ns)
        self.sh("ip", "route", "add", "default", "via", GW_GUEST, ns=self.cli2)
        self.sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=self.gw)
        self.sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", ns=self.gw)
        # The clients resolve through the gateway (ip netns exec bind-mounts this file).
        for resolv_dir in self.resolv_dirs:
            resolv_dir.mkdir(parents=True, exist_ok=True)
            (resolv_dir / "resolv.conf").write_text(f"nameserver {GW_GUEST}\n")

    def listen(self, ns: str, *services: str, name: str) -> Path:
        """TCP services (`addr:port`, `[v6]:port`) in a namespace; returns the log of who connected."""
        log = self.workdir / f"{name}-connections.jsonl"
        log.touch()
        proc = self.spawn(sys.executable, "-c", LISTENER, str(log), *services, ns=ns, log=f"{name}.log")
        self._wait(lambda: b"ready" in (self.workdir / f"{name}.log").read_bytes(), proc, name)
        return log

    def start_store_lan(self) -> Path:
        """The NAS and the printer on the store LAN, a service of the appliance's own, a port
        open on the second guest's phone: every one of them logs who connected."""
        services = [f"{addr}:{port}" for addr, port in STORE_PORTS.items()] + [f"[{STORE_HOST6}]:{STORE_PORTS[STORE_HOST]}"]
        self.store_log = self.listen(self.net, *services, name="store-lan")
        self.appliance_log = self.listen(self.gw, f"0.0.0.0:{GW_OTHER_PORT}", f"[::]:{GW_OTHER_PORT}", name="appliance")
        self.client2_log = self.listen(self.cli2, f"0.0.0.0:{CLIENT2_PORT}", f"[::]:{CLIENT2_PORT}", name="client2")
        return self.store_log

    @staticmethod
    def connections(log: Path) -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

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
                "--log-facility=-", "--log-queries", "--user=root", "--group=root"]
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

    def lease(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.lease_file.read_text().splitlines() if "=" in line)

    def link_local(self, ns: str, dev: str, timeout: float = 10) -> str:
        """An interface's IPv6 link-local address, once duplicate address detection is done."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for link in json.loads(self.sh("ip", "-j", "-6", "addr", "show", "dev", dev, "scope", "link", ns=ns).stdout or "[]"):
                for info in link.get("addr_info", []):
                    if "local" in info and not info.get("tentative"):
                        return info["local"]
            time.sleep(0.1)
        raise RuntimeError(f"{dev} has no link-local address")

    def dns_queries(self, suffix: str) -> int:
        """How many queries for names ending in `suffix` dnsmasq received (and answered)."""
        log = (self.workdir / "dnsmasq.log").read_text(errors="replace")
        return sum(1 for line in log.splitlines() if "query[" in line and f"{suffix} from " in line)

    def client(self, *args: str, timeout: float = 60, ns: str | None = None) -> dict:
        done = self.sh(sys.executable, str(HERE / "client.py"), *args, ns=ns or self.cli, timeout=timeout)
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
        for ns in (self.cli, self.cli2, self.gw, self.net):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for resolv_dir in self.resolv_dirs:
            shutil.rmtree(resolv_dir, ignore_errors=True)


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
           "FOOTFALL_OPENNDS_FASKEY": faskey, "FOOTFALL_PRIVACY_CONTACT": "privacy@caphe-test.vn",
           "FOOTFALL_LISTEN_HOST": "0.0.0.0", "FOOTFALL_LISTEN_PORT": str(port),
           "FOOTFALL_PORTAL_URL": f"http://{GW_GUEST}:{port}", "FOOTFALL_SESSION_SECONDS": str(session_seconds),
           "FOOTFALL_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    return [sys.executable, "-m", "portal", "portal"], env
