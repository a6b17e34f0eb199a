"""Gateway drivers: what lets a device online. Pick one with the `gateway` setting."""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Iterable, Protocol


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

    def client_mac(self, ip: str) -> str | None:
        """The MAC address behind a client IP, or None when the gateway cannot tell."""

    def authorize(self, grant: Grant) -> None:
        """Let the device online until grant.until (extends an existing grant)."""

    def revoke(self, mac: str) -> None:
        """Gate the device again at once."""

    def restore(self, grants: Iterable[Grant]) -> int:
        """Re-apply the unexpired grants at start-up; returns how many were applied."""


def load_gateway(name: str) -> Gateway:
    if name == "null":
        from portal.gateway.null import NullGateway
        return NullGateway()
    raise ValueError(f"unknown gateway driver {name!r}")
