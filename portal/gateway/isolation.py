"""Guest isolation: what an authorized guest may never reach, and the owner's exceptions.

An authorized guest reaches the internet only. Refused: every range that is not the public
internet (private, shared, loopback, link-local, multicast, documentation, reserved, and IPv6
outside global unicast 2000::/3), the uplink's own subnets (the store's LAN, even when it is a
public range), and networks the owner names. An owner may open single `address:port` services
(a printer, a menu screen) with the `guest_allowed_services` setting.

Pure values and parsing; portal/gateway/nftables.py turns them into sets.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import re
import subprocess
from dataclasses import dataclass
from typing import Any, Union

logger = logging.getLogger(__name__)

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

IFACE_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,15}\Z")

# Not the internet (IANA special-purpose registries, RFC 6890 and successors). No overlaps: the
# nftables interval set refuses them.
REFUSED_V4: tuple[str, ...] = (
    "0.0.0.0/8",        # "this network"
    "10.0.0.0/8",       # RFC 1918
    "100.64.0.0/10",    # shared address space (carrier-grade NAT), RFC 6598
    "127.0.0.0/8",      # loopback
    "169.254.0.0/16",   # link-local (also cloud metadata services)
    "172.16.0.0/12",    # RFC 1918
    "192.0.0.0/24",     # IETF protocol assignments
    "192.0.2.0/24",     # documentation (TEST-NET-1)
    "192.88.99.0/24",   # 6to4 relay anycast (deprecated)
    "192.168.0.0/16",   # RFC 1918
    "198.18.0.0/15",    # benchmarking
    "198.51.100.0/24",  # documentation (TEST-NET-2)
    "203.0.113.0/24",   # documentation (TEST-NET-3)
    "224.0.0.0/4",      # multicast
    "240.0.0.0/4",      # reserved, and 255.255.255.255
)
# Only 2000::/3 (global unicast) is forwarded at all: ::/8 (loopback, unspecified, IPv4-mapped,
# NAT64 64:ff9b::/96 that would reach private IPv4 through a translator), ULA fc00::/7,
# link-local fe80::/10 and multicast ff00::/8 are outside it. Inside it, these are refused too:
GLOBAL_V6 = "2000::/3"
REFUSED_V6: tuple[str, ...] = (
    "2001::/23",        # IETF protocol assignments: Teredo 2001::/32 tunnels to any IPv4, benchmarking
    "2001:db8::/32",    # documentation
    "2002::/16",        # 6to4: embeds an IPv4 address (2002:c0a8:010a:: is 192.168.1.10)
    "3fff::/20",        # documentation (RFC 9637)
)


@dataclass(frozen=True)
class Service:
    """One address:port a guest may reach despite isolation (TCP and UDP)."""
    address: IPAddress
    port: int

    def __str__(self) -> str:
        return f"[{self.address}]:{self.port}" if self.address.version == 6 else f"{self.address}:{self.port}"


def parse_services(text: str) -> tuple[Service, ...]:
    """`192.168.1.20:631, [fd00::5]:443` -> Services; ValueError says which entry is wrong."""
    services: list[Service] = []
    for raw in (part.strip() for part in text.split(",")):
        if not raw:
            continue
        match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([0-9.]+):([0-9]{1,5})", raw)
        if not match:
            raise ValueError(f"{raw!r} is not address:port (write IPv6 as [address]:port)")
        address_text, port_text = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
        try:
            address = ipaddress.ip_address(address_text)
        except ValueError:
            raise ValueError(f"{raw!r}: {address_text!r} is not an IP address") from None
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError(f"{raw!r}: port must be 1-65535")
        if Service(address, port) not in services:
            services.append(Service(address, port))
    return tuple(services)


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """`192.0.2.0/24, 2001:db8:1::/48` -> networks (host bits allowed); ValueError names the bad one."""
    networks: list[IPNetwork] = []
    for raw in (part.strip() for part in text.split(",")):
        if not raw:
            continue
        if not re.fullmatch(r"[0-9A-Fa-f:.]+(/[0-9]{1,3})?", raw):
            raise ValueError(f"{raw!r} is not a network (CIDR)")
        try:
            networks.append(ipaddress.ip_network(raw, strict=False))
        except ValueError:
            raise ValueError(f"{raw!r} is not a network (CIDR)") from None
    return tuple(networks)


def _ip_json(*args: str) -> list[dict[str, Any]]:
    try:
        done = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, timeout=5)
        return json.loads(done.stdout or "[]") if done.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return []


def default_route_interfaces() -> tuple[str, ...]:
    """The interfaces of the IPv4 and IPv6 default routes (the uplink, when none is set)."""
    names: list[str] = []
    for family in ("-4", "-6"):
        for route in _ip_json(family, "route", "show", "default"):
            dev = route.get("dev")
            if isinstance(dev, str) and IFACE_RE.match(dev) and dev not in names:
                names.append(dev)
    return tuple(names)


def interface_networks(interface: str) -> tuple[IPNetwork, ...]:
    """The subnets an interface's addresses sit in, as the kernel holds them now."""
    networks: list[IPNetwork] = []
    for link in _ip_json("addr", "show", "dev", interface):
        for info in link.get("addr_info", []):
            try:
                network = ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}").network
            except (KeyError, ValueError):
                continue
            if not network.is_link_local and network not in networks:  # link-local: refused anyway
                networks.append(network)
    return tuple(networks)


@dataclass(frozen=True)
class Isolation:
    """The owner's isolation settings; the uplink's subnets are read when the gate is built."""
    uplink_interface: str = ""          # empty: the interfaces of the default routes
    blocked: tuple[IPNetwork, ...] = ()
    allowed: tuple[Service, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> "Isolation":
        return cls(settings.uplink_interface, parse_networks(settings.guest_blocked_networks),
                   parse_services(settings.guest_allowed_services))

    def store_networks(self) -> tuple[IPNetwork, ...]:
        """The uplink's subnets (read now) and the owner's blocked networks."""
        uplinks = (self.uplink_interface,) if self.uplink_interface else default_route_interfaces()
        found: list[IPNetwork] = []
        for interface in uplinks:
            networks = interface_networks(interface)
            if not networks:
                logger.warning("uplink %s has no address yet: its subnet is not refused to guests until the gate is rebuilt", interface)
            found.extend(networks)
        if not uplinks:
            logger.warning("no uplink interface (no default route, uplink_interface unset): only fixed ranges are refused to guests")
        return tuple(dict.fromkeys([*found, *self.blocked]))
