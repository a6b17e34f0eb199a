"""The null driver: enforces nothing, remembers grants. For the demo and the tests."""
from __future__ import annotations

import datetime
import hashlib
import ipaddress
import threading
from typing import Iterable

from portal.gateway import Grant


def synthetic_mac(ip: str) -> str:
    """A stable, locally administered MAC standing in for a client the null driver cannot see."""
    digest = hashlib.sha256(ipaddress.ip_address(ip).packed).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


class NullGateway:
    name = "null"
    enforcing = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.grants: dict[str, Grant] = {}

    def client_mac(self, ip: str) -> str | None:
        try:
            return synthetic_mac(ip)
        except ValueError:
            return None

    def authorize(self, grant: Grant) -> None:
        with self._lock:
            self.grants[grant.mac] = grant

    def revoke(self, mac: str) -> None:
        with self._lock:
            self.grants.pop(mac, None)

    def restore(self, grants: Iterable[Grant]) -> int:
        with self._lock:
            self.grants = {g.mac: g for g in grants}
            return len(self.grants)

    def last_activity(self) -> dict[str, datetime.datetime]:
        # Nothing to ask: the portal sees the devices' own probes (portal/signin_visits.py LastSeen).
        return {}
