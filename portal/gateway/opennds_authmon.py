"""The FAS side of openNDS 9.10's authentication monitor (FAS secure level 3).

At level 3 the router's authmon script (/usr/lib/opennds/authmon.sh, through post-request.php)
POSTs to the FAS URL, as application/x-www-form-urlencoded:

    auth_get=<action>  gatewayhash=<sha256 of the URL-encoded gatewayname>  payload=<base64>

- `clear` once at start-up (stale entries). Here it removes nothing: entries leave the list only
  when acknowledged or expired, so no forged poll can cancel a guest's sign-in.
- `view` with payload "none", every poll interval: the FAS answers `*` followed by one
  rawurlencoded line per client to let out, "<rhid> <minutes> <upload rate> <download rate>
  <upload quota> <download quota> <custom b64>", space-separated. authmon reads only the first
  1024 characters after "* ", so the answer is cut there (the rest wait for the next poll).
  authmon runs `ndsctl auth <line>` for each, where rhid = sha256(hid + faskey).
- `view` with payload "* <rhid> <rhid>…": the rhids ndsctl authenticated. The FAS drops them
  from the list and answers "ack". `list` (send and forget) is answered like `view`: a client
  leaves only when the router confirms it.
- `deauthed` and `custom` (libopennds notifications): answered "ack".

Nothing in this protocol is secret (gatewayhash names a gateway; the gateway's name is public),
so only the addresses in `opennds_authmon_networks` may poll: a guest must not read or
acknowledge the list. Where the router NATs its guests to the address it polls from, that check
cannot tell them apart; an rhid still only ever lets out the client openNDS issued it to.
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping
from urllib.parse import quote

_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")
LIST_MAX = 1024  # authmon keeps ${authlist:2:1024}
PAYLOAD_MAX = 8192
CUSTOM = base64.b64encode(b"footfall").decode()  # shown in `ndsctl json`; nothing personal


class AuthGetRefused(ValueError):
    """A poll from an address not allowed to poll, or one that is not openNDS's protocol."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


@dataclass
class _Entry:
    line: str
    queued: float
    acked: float | None = None


class AuthList:
    """Clients whose consent is recorded, waiting for authmon to let them out, per gateway."""

    def __init__(self, networks: tuple = (), ttl: float = 120, keep: float = 600, size: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.networks, self.ttl, self.keep, self.size, self.clock = networks, ttl, keep, size, clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.Lock()

    def add(self, gatewayhash: str, rhid: str, seconds: int) -> bool:
        """Queue a client for authmon; False when the list is full (the caller answers 503)."""
        minutes = max(1, -(-seconds // 60))
        with self._lock:
            self._purge()
            if len(self._entries) >= self.size:
                return False
            self._entries[(gatewayhash, rhid)] = _Entry(f"{rhid} {minutes} 0 0 0 0 {CUSTOM}", self.clock())
            return True

    def state(self, gatewayhash: str, rhid: str) -> str:
        """"done" once authmon confirmed, "pending" while it may still, "timeout" after, "unknown"."""
        with self._lock:
            entry = self._entries.get((gatewayhash, rhid))
            if entry is None:
                return "unknown"
            if entry.acked is not None:
                return "done"
            return "pending" if entry.queued > self.clock() - self.ttl else "timeout"

    def answer(self, form: Mapping[str, str], peer: str) -> str:
        """The body authmon reads for one POST; raises AuthGetRefused."""
        if not self._allowed(peer):
            raise AuthGetRefused(f"auth_get from {peer}, outside opennds_authmon_networks", 403)
        action, gatewayhash = form.get("auth_get", ""), form.get("gatewayhash", "")
        if not _HEX64.match(gatewayhash):
            raise AuthGetRefused("gatewayhash is not a sha256 digest")
        payload = form.get("payload", "")
        if len(payload) > PAYLOAD_MAX:
            raise AuthGetRefused("payload is too long")
        try:
            text = base64.b64decode(payload, validate=True).decode("ascii")
        except (binascii.Error, ValueError):
            raise AuthGetRefused("payload is not base64 of ASCII text") from None
        if action in ("deauthed", "custom"):
            return "ack"
        if action == "clear":
            return ""
        if action not in ("view", "list"):
            raise AuthGetRefused("unknown auth_get action")
        if text == "none":
            return self._pending(gatewayhash)
        acked = [w for w in text.split() if w != "*"]
        if not all(_HEX64.match(w) for w in acked):
            raise AuthGetRefused("the acknowledgement list holds something other than rhids")
        with self._lock:
            for rhid in acked:
                entry = self._entries.get((gatewayhash, rhid))
                if entry is not None and entry.acked is None:
                    entry.acked = self.clock()
        return "ack"

    def _pending(self, gatewayhash: str) -> str:
        now, body = self.clock(), "*"
        with self._lock:
            self._purge()
            for (gw, _rhid), entry in self._entries.items():
                if gw != gatewayhash or entry.acked is not None or entry.queued <= now - self.ttl:
                    continue
                item = " " + quote(entry.line, safe="")
                if len(body) + len(item) > LIST_MAX + 2:
                    break
                body += item
        return body

    def _purge(self) -> None:
        horizon = self.clock() - self.ttl - self.keep
        for key in [k for k, e in self._entries.items() if (e.acked or e.queued) <= horizon]:
            del self._entries[key]

    def _allowed(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        address = getattr(address, "ipv4_mapped", None) or address
        return any(address in network for network in self.networks)
