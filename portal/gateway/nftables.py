"""The nftables driver: Footfall's own `inet footfall` table gates the guest interface.

Unauthorized devices get DHCP, DNS to the gateway (bounded per client) and the portal; their
port 80 is redirected to the portal, everything else is refused at once (TCP reset, ICMP
admin-prohibited), IPv6 included. Authorized MACs sit in a set whose per-element timeouts the
kernel enforces, and reach the internet only: the ranges and services of portal.gateway.isolation
are refused, as are other guests, the appliance's other ports and connections started towards
guests from outside. Every change is one nft transaction; no other table is ever touched.
"""
from __future__ import annotations

import ctypes
import datetime
import ipaddress
import logging
import re
import subprocess
import threading
from pathlib import Path
from typing import Iterable

from portal.core.macs import MAC
from portal.gateway import GatewayError, Grant
from portal.gateway.isolation import GLOBAL_V6, IFACE_RE, REFUSED_V4, REFUSED_V6, IPNetwork, Isolation, Service

logger = logging.getLogger(__name__)

TABLE = "footfall"
_IFACE_RE = IFACE_RE
# Unauthorized clients' DNS, per client (MAC, and IPv4 source): enough for a phone's captive
# detection and the lookups of apps waking up on a new network, far too little for a DNS tunnel
# to carry a browsing session. The shared limit backs it up when forged MACs fill the per-client set
# (a full dynamic set no longer matches) or rotate to dodge it.
DNS_RATE, DNS_BURST = 10, 30
DNS_ALL_RATE, DNS_ALL_BURST = 250, 1000
DNS_CLIENTS = 8192


def ruleset(interface: str, portal_port: int, grants: Iterable[Grant] = (), now: datetime.datetime | None = None,
            *, store: Iterable[IPNetwork] = (), allowed: Iterable[Service] = (), tls_ports: Iterable[int] = ()) -> str:
    """The whole table, with its authorized set filled: applied as one atomic transaction.

    `store` are the networks of the store's own LAN (the uplink's subnets, the owner's list) and
    `allowed` the owner's exceptions; the fixed non-internet ranges are always refused."""
    if not _IFACE_RE.match(interface):
        raise GatewayError(f"invalid interface name {interface!r}")
    if not 1 <= int(portal_port) <= 65535:
        raise GatewayError(f"invalid portal port {portal_port!r}")
    store, allowed = list(store), list(allowed)
    # The TLS front's https port (deploy/install.sh --tls-cert), reachable before and after sign-in.
    ports = ", ".join(str(p) for p in sorted({53, int(portal_port), *(int(p) for p in tls_ports if 1 <= int(p) <= 65535)}))
    # `table; delete table; table {...}` replaces our table atomically and leaves others alone.
    return f"""table inet {TABLE}
delete table inet {TABLE}
table inet {TABLE} {{
    set authorized {{
        type ether_addr
        flags timeout{_listing(_elements(grants, now))}
    }}
    set refused4 {{
        type ipv4_addr
        flags interval{_listing(", ".join(REFUSED_V4))}
    }}
    set refused6 {{
        type ipv6_addr
        flags interval{_listing(", ".join(REFUSED_V6))}
    }}
    set store4 {{
        type ipv4_addr
        flags interval
        auto-merge{_listing(", ".join(str(n) for n in store if n.version == 4))}
    }}
    set store6 {{
        type ipv6_addr
        flags interval
        auto-merge{_listing(", ".join(str(n) for n in store if n.version == 6))}
    }}
    set allowed4 {{
        type ipv4_addr . inet_service{_listing(", ".join(f"{s.address} . {s.port}" for s in allowed if s.address.version == 4))}
    }}
    set allowed6 {{
        type ipv6_addr . inet_service{_listing(", ".join(f"{s.address} . {s.port}" for s in allowed if s.address.version == 6))}
    }}
    set dns_clients {{
        type ether_addr
        size {DNS_CLIENTS}
        flags dynamic,timeout
        timeout 30s
    }}
    set dns_clients4 {{
        type ipv4_addr
        size {DNS_CLIENTS}
        flags dynamic,timeout
        timeout 30s
    }}
    chain stale_redirects {{
        type filter hook prerouting priority mangle; policy accept;
        # A keep-alive connection redirected to the portal before sign-in is reset at its next
        # packet (seen here before NAT, so the reset comes from the site the browser asked for):
        # a browser reusing it would keep seeing the portal; its new connection goes out.
        iifname "{interface}" ether saddr @authorized ct status dnat tcp dport 80 reject with tcp reset
    }}
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname "{interface}" ether saddr != @authorized tcp dport 80 redirect to :{portal_port}
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname != "{interface}" accept
        meta l4proto {{ tcp, udp }} th dport 53 ether saddr != @authorized jump dns_bound
        ct state established,related accept
        udp dport {{ 53, 67 }} accept
        tcp dport {{ {ports} }} accept
        meta l4proto {{ icmp, ipv6-icmp }} accept
        jump refuse
    }}
    chain dns_bound {{
        update @dns_clients {{ ether saddr limit rate over {DNS_RATE}/second burst {DNS_BURST} packets }} drop
        update @dns_clients4 {{ ip saddr limit rate over {DNS_RATE}/second burst {DNS_BURST} packets }} drop
        limit rate over {DNS_ALL_RATE}/second burst {DNS_ALL_BURST} packets drop
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname "{interface}" jump from_guests
        oifname "{interface}" ct state established,related accept
        oifname "{interface}" jump refuse
    }}
    chain from_guests {{
        ether saddr != @authorized jump refuse
        oifname "{interface}" jump refuse
        meta l4proto {{ tcp, udp }} ip daddr . th dport @allowed4 accept
        meta l4proto {{ tcp, udp }} ip6 daddr . th dport @allowed6 accept
        ip daddr @refused4 jump refuse
        ip daddr @store4 jump refuse
        ip6 daddr != {GLOBAL_V6} jump refuse
        ip6 daddr @refused6 jump refuse
        ip6 daddr @store6 jump refuse
        accept
    }}
    chain refuse {{
        meta l4proto tcp reject with tcp reset
        reject with icmpx type admin-prohibited
    }}
}}
"""


def _listing(elements: str) -> str:
    return f"\n        elements = {{ {elements} }}" if elements else ""


def _timeout(until: datetime.datetime, now: datetime.datetime) -> int:
    return max(1, int((until - now).total_seconds()))


def _elements(grants: Iterable[Grant], now: datetime.datetime | None) -> str:
    now = now or _utcnow()
    parts = [f"{_mac(g.mac)} timeout {_timeout(g.until, now)}s" for g in grants if g.until > now]
    return ", ".join(parts)


def _seconds(duration: str) -> int:
    """nft's `1d2h3m4s500ms` as whole seconds."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|d|h|m|s)", duration))


def _mac(mac: str) -> str:
    mac = mac.lower()
    if not MAC.match(mac):
        raise GatewayError(f"invalid MAC address {mac!r}")
    return mac


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class Nft:
    """libnftables through ctypes (a fork-free transaction takes ~0.2 ms); `nft -f -` otherwise."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        try:
            lib = ctypes.CDLL("libnftables.so.1")
        except OSError:
            self._lib = None
            return
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        self._lib = lib
        self._ctx = lib.nft_ctx_new(0)
        lib.nft_ctx_buffer_error(self._ctx)
        lib.nft_ctx_buffer_output(self._ctx)

    def run(self, commands: str) -> str:
        """Apply `commands` as one transaction; raises GatewayError with nft's message."""
        with self._lock:
            if self._lib is None:
                done = subprocess.run(["nft", "-f", "-"], input=commands, capture_output=True, text=True, timeout=30)
                if done.returncode != 0:
                    raise GatewayError(done.stderr.strip() or "nft failed")
                return done.stdout
            rc = self._lib.nft_run_cmd_from_buffer(self._ctx, commands.encode())
            output = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode()
            if rc != 0:
                raise GatewayError((self._lib.nft_ctx_get_error_buffer(self._ctx) or b"nft failed").decode().strip())
            return output


class NftablesGateway:
    name = "nftables"
    enforcing = True

    def __init__(self, interface: str, portal_port: int, nft: Nft | None = None,
                 isolation: Isolation | None = None, tls_ports: tuple[int, ...] = ()) -> None:
        if not _IFACE_RE.match(interface):
            raise GatewayError(f"invalid interface name {interface!r}")
        self.interface = interface
        self.portal_port = portal_port
        self.tls_ports = tls_ports
        self.nft = nft or Nft()
        self.isolation = isolation or Isolation()

    def restore(self, grants: Iterable[Grant]) -> int:
        """(Re)build the table with every unexpired grant, in one transaction; the uplink's
        subnets are read again here, so a restart follows an uplink that moved."""
        grants = list(grants)
        store = self.isolation.store_networks()
        logger.info("guests refused the store LAN %s", ", ".join(map(str, store)) or "(none found)")
        self.nft.run(ruleset(self.interface, self.portal_port, grants, store=store, allowed=self.isolation.allowed,
                             tls_ports=self.tls_ports))
        now = _utcnow()
        return sum(1 for g in grants if g.until > now)

    def authorize(self, grant: Grant) -> None:
        mac = _mac(grant.mac)
        seconds = _timeout(grant.until, _utcnow())
        # add (so that delete cannot fail), delete, add with the new timeout: one transaction.
        self.nft.run(f"add element inet {TABLE} authorized {{ {mac} }}\n"
                     f"delete element inet {TABLE} authorized {{ {mac} }}\n"
                     f"add element inet {TABLE} authorized {{ {mac} timeout {seconds}s }}\n")

    def revoke(self, mac: str) -> None:
        mac = _mac(mac)
        self.nft.run(f"add element inet {TABLE} authorized {{ {mac} }}\n"
                     f"delete element inet {TABLE} authorized {{ {mac} }}\n")

    def authorized(self) -> dict[str, int]:
        """MAC -> seconds left, as the kernel holds them (for checks and tests)."""
        out = self.nft.run(f"list set inet {TABLE} authorized")
        return {mac: _seconds(left) for mac, left in re.findall(r"([0-9a-f:]{17}) timeout \S+ expires ([0-9dhms]+)", out)}

    def client_mac(self, ip: str) -> str | None:
        return neighbour_mac(ip)

    def last_activity(self) -> dict[str, datetime.datetime]:
        """MAC -> when the kernel last confirmed each guest reachable (its neighbour table)."""
        out = subprocess.run(["ip", "-j", "-s", "neigh", "show", "dev", self.interface], capture_output=True,
                             text=True, timeout=5)
        return parse_neighbours(out.stdout, _utcnow())


def parse_neighbours(text: str, now: datetime.datetime) -> dict[str, datetime.datetime]:
    """MAC -> now minus `confirmed` seconds, from `ip -j -s neigh`; entries that failed or have
    no address are left out (several IPs of one MAC: the latest)."""
    import json

    try:
        rows = json.loads(text or "[]")
    except ValueError:
        return {}
    out: dict[str, datetime.datetime] = {}
    for row in rows if isinstance(rows, list) else ():
        if not isinstance(row, dict):
            continue
        mac, confirmed, state = str(row.get("lladdr", "")).lower(), row.get("confirmed"), row.get("state") or []
        if not MAC.match(mac) or not isinstance(confirmed, int) or confirmed < 0 or "FAILED" in state \
                or "INCOMPLETE" in state:
            continue
        at = now - datetime.timedelta(seconds=confirmed)
        if mac not in out or at > out[mac]:
            out[mac] = at
    return out


def neighbour_mac(ip: str, arp_table: Path = Path("/proc/net/arp")) -> str | None:
    """The MAC behind an IP, from the kernel's neighbour table (IPv4: /proc/net/arp)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if address.version == 4:
        try:
            lines = arp_table.read_text().splitlines()[1:]
        except OSError:
            return None
        for line in lines:
            fields = line.split()
            # IP, HW type, flags (0x2 = complete), MAC, mask, device
            if len(fields) >= 6 and fields[0] == ip and int(fields[2], 16) & 0x2 and fields[3] != "00:00:00:00:00:00":
                return fields[3].lower()
        return None
    try:
        out = subprocess.run(["ip", "-6", "neigh", "show", ip], capture_output=True, text=True, timeout=2).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"lladdr ([0-9a-f:]{17})", out)
    return match.group(1) if match else None
