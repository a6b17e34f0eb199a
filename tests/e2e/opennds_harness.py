"""The real openNDS daemon at FAS secure level 1, 2 or 3 inside a tests/e2e/netns.py topology.

Level 2 and 3 make openNDS run php-cli (Debian: php-cli, whose php8.2-common carries openssl) to
encrypt the FAS query; level 3 also starts its authmon script, which polls the FAS over HTTPS with
php's own HTTP client. The "portal over HTTPS" of level 3 is a small TLS front (tls_front.py) in
the gateway namespace with a throwaway CA made here; openNDS's php trusts that CA through
SSL_CERT_FILE, so nothing outside the test's directory changes.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.netns import GW_GUEST, HERE, Topology

FAS_PORT, TLS_PORT, GATEWAY_PORT = 8080, 8443, 2050
GATEWAY_NAME = "footfall-test"
CONF = """GatewayInterface guest0
GatewayName {name}
gatewayport {gateway_port}
fasport {fas_port}
fasremoteip {gw}
faspath /fas/
fas_secure_enabled {level}
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


def missing_packages(level: int) -> list[str]:
    """What this level needs on the "router" that is not installed."""
    missing = [] if shutil.which("opennds") and shutil.which("iptables-legacy") else ["opennds", "iptables"]
    if level >= 2 and not shutil.which("php"):
        missing.append("php-cli")
    return missing


def make_ca(directory: Path, address: str = GW_GUEST) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for `address`: (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject, issuer, public_key, signer, ca: bool, san=None):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "footfall test CA")])
    ca = build(ca_name, ca_name, ca_key.public_key(), ca_key, True)
    cert = build(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)]), ca_name, key.public_key(), ca_key,
                 False, [x509.IPAddress(ipaddress.ip_address(address))])
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def start_tls_front(topo: Topology, cert: Path, key: Path, backend_port: int = FAS_PORT) -> None:
    """HTTPS on GW_GUEST:TLS_PORT in the gateway namespace, relayed to the portal's plain port."""
    log = topo.workdir / "tls-front.log"
    proc = topo.spawn(sys.executable, str(HERE / "tls_front.py"), GW_GUEST, str(TLS_PORT), str(backend_port),
                      str(cert), str(key), ns=topo.gw, log="tls-front.log")
    topo._wait(lambda: log.exists() and b"ready" in log.read_bytes(), proc, "tls front")


def start_opennds(topo: Topology, faskey: str, level: int, ca_file: Path | None = None) -> subprocess.Popen:
    """openNDS on guest0 with Footfall as its FAS at `level` (3: over HTTPS on TLS_PORT)."""
    tmp = topo.nds_tmp
    bindir = tmp / "bin"
    bindir.mkdir(exist_ok=True)
    for tool in ("iptables", "iptables-save", "iptables-restore"):  # openNDS 9.10 needs the legacy backend
        link = bindir / tool
        if not link.exists():
            link.symlink_to(shutil.which(tool.replace("iptables", "iptables-legacy")))
    fas_port = TLS_PORT if level == 3 else FAS_PORT
    (tmp / "opennds.conf").write_text(CONF.format(name=GATEWAY_NAME, gateway_port=GATEWAY_PORT, fas_port=fas_port,
                                                  gw=GW_GUEST, level=level, faskey=faskey))
    # The daemon refuses this option in its own file; authmon reads it from /etc/opennds/opennds.conf.
    (tmp / "authmon.conf").write_text("nat_traversal_poll_interval 1\n")
    # openNDS rewrites /etc/dnsmasq.conf and /etc/hosts, and authmon reads its options from
    # /etc/opennds/opennds.conf: all three are private copies in its own mount namespace.
    script = ('set -e; for f in dnsmasq.conf hosts; do touch "$0/etc-$f"; '
              '[ -f "/etc/$f" ] && cp "/etc/$f" "$0/etc-$f"; touch "/etc/$f"; mount --bind "$0/etc-$f" "/etc/$f"; done; '
              'if [ -f /etc/opennds/opennds.conf ]; then mount --bind "$0/authmon.conf" /etc/opennds/opennds.conf; fi; '
              'mount --bind "$0" /tmp; exec opennds -f -d 3 -c /tmp/opennds.conf')
    env = {"PATH": f"/tmp/bin:{os.environ['PATH']}"}
    if ca_file is not None:  # php's https client (authmon) trusts the test CA only; /tmp is nds_tmp in there
        shutil.copyfile(ca_file, tmp / "test-ca.pem")
        env["SSL_CERT_FILE"] = "/tmp/test-ca.pem"
    proc = topo.spawn("sh", "-c", script, str(tmp), ns=topo.gw,
                      env=env, log="opennds.log")
    topo._wait(lambda: "openNDS is now running" in (topo.workdir / "opennds.log").read_text(errors="replace"),
               proc, "opennds", timeout=30)
    topo.opennds = proc
    return proc


def wait_for_log(topo: Topology, needle: str, timeout: float = 30) -> bool:
    """Bounded wait for a line in openNDS's log (authmon's polls land there too)."""
    log = topo.workdir / "opennds.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in log.read_text(errors="replace"):
            return True
        time.sleep(0.2)
    return False


def run_client(topo: Topology, *args: str, timeout: float = 90) -> dict:
    """tests/e2e/opennds_client.py inside the client namespace."""
    import json
    done = topo.sh(sys.executable, str(HERE / "opennds_client.py"), *args, ns=topo.cli, timeout=timeout)
    return json.loads(done.stdout)
