"""The openNDS driver: Footfall as the Forward Authentication Service of an openNDS router.

openNDS (fas_secure_enabled 1, faskey set) sends the browser to the portal with `fas`, the
base64 of `hid=…, clientip=…, clientmac=…, gatewayaddress=…, originurl=…` (values
URL-encoded, pairs separated by comma-space). After consent the portal sends the browser to
`http://<gatewayaddress>/<authdir>/?tok=<sha256(hid + faskey)>&redir=…`; openNDS checks the
token against the hid it issued and lets the client out. The router enforces; the portal records.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import logging
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Iterable
from urllib.parse import quote, unquote

from portal.safeurl import safe_continue
from portal.gateway import Grant

logger = logging.getLogger(__name__)

FAS_MAX = 4096
_HID = re.compile(r"^[0-9a-f]{64}$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_AUTHDIR = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_GATEWAY = re.compile(r"^([0-9.]{7,15}|\[[0-9a-f:]+\]):([0-9]{1,5})$")


class InvalidFas(ValueError):
    """The `fas` parameter is missing, malformed or names a gateway we do not serve."""


@dataclass(frozen=True)
class FasRequest:
    hid: str
    clientip: str
    clientmac: str
    gatewayaddress: str
    authdir: str
    originurl: str | None
    client_type: str

    def to_session(self) -> dict:
        return asdict(self)

    @classmethod
    def from_session(cls, data) -> "FasRequest | None":
        try:
            return cls(**data) if isinstance(data, dict) else None
        except TypeError:
            return None


def parse_fas(value: str | None, allowed_gateways: frozenset[str] = frozenset()) -> FasRequest:
    """Decode and check openNDS's `fas` parameter; raises InvalidFas with a reason."""
    if not value or len(value) > FAS_MAX:
        raise InvalidFas("missing or oversized fas parameter")
    try:
        text = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode("ascii")
    except (binascii.Error, ValueError):
        raise InvalidFas("fas is not base64 of ASCII text") from None
    fields: dict[str, str] = {}
    for pair in text.split(", "):
        name, sep, raw = pair.partition("=")
        if sep and name and name not in fields:
            fields[name] = unquote(raw)
    hid = fields.get("hid", "")
    mac = fields.get("clientmac", "").lower()
    gateway = fields.get("gatewayaddress", "")
    authdir = fields.get("authdir", "opennds_auth")
    if not _HID.match(hid):
        raise InvalidFas("hid is not a sha256 digest (is faskey set and fas_secure_enabled 1?)")
    if not _MAC.match(mac):
        raise InvalidFas("clientmac is not a MAC address")
    try:
        clientip = str(ipaddress.ip_address(fields.get("clientip", "")))
    except ValueError:
        raise InvalidFas("clientip is not an IP address") from None
    if not _authorized_gateway(gateway, allowed_gateways):
        raise InvalidFas(f"gatewayaddress {gateway!r} is not a gateway this portal serves")
    if not _AUTHDIR.match(authdir):
        raise InvalidFas("authdir is malformed")
    return FasRequest(hid=hid, clientip=clientip, clientmac=mac, gatewayaddress=gateway, authdir=authdir,
                      originurl=safe_continue(fields.get("originurl")),
                      client_type=re.sub(r"[^a-z_]", "", fields.get("client_type", ""))[:32])


def _authorized_gateway(gateway: str, allowed: frozenset[str]) -> bool:
    """Listed gateways only; with no list, a private address and port (never a public host:
    the portal would otherwise redirect browsers anywhere a forged fas names)."""
    match = _GATEWAY.match(gateway)
    if not match:
        return False
    if allowed:
        return gateway in allowed
    try:
        address = ipaddress.ip_address(match.group(1).strip("[]"))
    except ValueError:
        return False
    return (address.is_private or address.is_link_local) and 0 < int(match.group(2)) < 65536


def auth_token(hid: str, faskey: str) -> str:
    return hashlib.sha256((hid + faskey).encode()).hexdigest()


def auth_url(fas: FasRequest, faskey: str, redir: str) -> str:
    """Where the browser goes once consent is recorded: openNDS's own authentication URL."""
    return (f"http://{fas.gatewayaddress}/{fas.authdir}/?tok={auth_token(fas.hid, faskey)}"
            f"&redir={quote(redir, safe='')}")


class OpenNDSGateway:
    name = "opennds"
    enforcing = True

    def __init__(self, faskey: str) -> None:
        if not faskey:
            raise ValueError("the opennds gateway needs opennds_faskey (the router's faskey)")
        self.faskey = faskey

    def client_mac(self, ip: str) -> str | None:
        return None  # openNDS names the client in the fas parameter

    def authorize(self, grant: Grant) -> None:
        """Nothing to do here: the browser completes authorization at openNDS's auth URL."""

    def revoke(self, mac: str) -> None:
        # Only a portal on the router itself can reach ndsctl; a remote FAS cannot deauthenticate.
        if shutil.which("ndsctl"):
            subprocess.run(["ndsctl", "deauth", mac], capture_output=True, timeout=10)
        else:
            logger.warning("cannot deauthenticate %s: ndsctl is not on this host", mac)

    def restore(self, grants: Iterable[Grant]) -> int:
        return 0  # openNDS keeps its own client list across portal restarts
