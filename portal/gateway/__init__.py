"""Gateway drivers: what lets a device online. Pick one with the `gateway` setting."""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Iterable, Protocol
from urllib.parse import urlsplit


class GatewayError(RuntimeError):
    """The gateway could not apply a change; the caller must not report success."""


@dataclass(frozen=True)
class Grant:
    """One device let online until `until` (naive UTC)."""
    mac: str
    ip: str | None
    until: datetime.datetime


class Gateway(Protocol):
    name: str
    # An enforcing gateway forwards authorized devices itself, so any probe that reaches the
    # portal comes from a device the gateway holds captive: the portal must never answer "online".
    enforcing: bool

    def client_mac(self, ip: str) -> str | None:
        """The MAC address behind a client IP, or None when the gateway cannot tell."""

    def authorize(self, grant: Grant) -> None:
        """Let the device online until grant.until (extends an existing grant)."""

    def revoke(self, mac: str) -> None:
        """Gate the device again at once."""

    def restore(self, grants: Iterable[Grant]) -> int:
        """Re-apply the unexpired grants at start-up; returns how many were applied."""

    def last_activity(self) -> dict[str, datetime.datetime]:
        """MAC -> the last sign of life the gateway saw of each client (naive UTC); empty when it
        cannot tell (portal/signin_visits.py)."""


def tls_ports(settings) -> tuple[int, ...]:
    """The https port guests reach the portal on when it sits behind a TLS front, else none."""
    url = urlsplit(settings.portal_url)
    return (url.port or 443,) if url.scheme == "https" else ()


def load_gateway(settings) -> Gateway:
    if settings.gateway == "null":
        from portal.gateway.null import NullGateway
        return NullGateway()
    if settings.gateway == "nftables":
        from portal.gateway.isolation import Isolation
        from portal.gateway.nftables import NftablesGateway
        return NftablesGateway(settings.guest_interface, settings.listen_port, isolation=Isolation.from_settings(settings),
                               tls_ports=tls_ports(settings))
    if settings.gateway == "opennds":
        from portal.gateway.opennds import OpenNDSGateway
        return OpenNDSGateway.from_settings(settings)
    raise ValueError(f"unknown gateway driver {settings.gateway!r}")
