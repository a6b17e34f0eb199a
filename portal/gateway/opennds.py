"""The openNDS driver: Footfall as the Forward Authentication Service of an openNDS 9.10 router.

openNDS sends a captive browser to the portal with `fas`: `hid=…, clientip=…, clientmac=…,
gatewayname=…, gatewayaddress=…, authdir=…, originurl=…` (values URL-encoded, pairs separated
by comma-space). How it travels depends on the router's `fas_secure_enabled`:

- level 1: `?fas=base64(query)`. Anyone can build one: a guest who writes another device's MAC
  would speak for that device. Only with `opennds_secure_level = 1`, and logged as a warning.
- level 2: `?fas=base64(base64(AES-256-CBC(query)))&iv=…`. openNDS runs php-cli: the key is the
  faskey NUL-padded to 32 bytes (php's openssl_encrypt), the IV is 16 hex characters used as
  they are (the first 16 of sha256 over 8 random bytes), PKCS#7 padding, and php returns the
  ciphertext base64-encoded, which openNDS base64-encodes again.
- level 3: the same query, to a FAS served over HTTPS, and the router's authmon script polls the
  FAS for clients to let out instead of the browser carrying the token (opennds_authmon.py).

CBC is not authenticated, so a query that decrypts is trusted only after strict parsing, every
failure answers the same way (no padding oracle), failures are counted per TCP peer (a guest
cannot forge it), and a ciphertext speaks for one browser session only (no replay).

After consent (levels 1-2) the browser goes to `http://<gatewayaddress>/<authdir>/?tok=<rhid>`,
rhid = sha256(hid + faskey); openNDS checks it against the hid it issued and lets the client out.
The router enforces; the portal records.
"""
from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import ipaddress
import json
import logging
import re
import shutil
import subprocess
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Mapping
from urllib.parse import quote, unquote

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from portal.core.macs import MAC
from portal.gateway import Grant
from portal.gateway.opennds_authmon import AuthList
from portal.safeurl import safe_continue

logger = logging.getLogger(__name__)

FAS_MAX = 4096
LEVELS = (1, 2, 3)
FASKEY = re.compile(r"^[A-Za-z0-9]{1,32}\Z")  # what openNDS documents; php would cut a longer key at 32
_HID = re.compile(r"^[0-9a-f]{64}\Z")
_AUTHDIR = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
_GATEWAY = re.compile(r"^([0-9.]{7,15}|\[[0-9a-f:]+\]):([0-9]{1,5})\Z")
_GATEWAYNAME = re.compile(r"^[A-Za-z0-9%._~-]{1,256}\Z")
_IV = re.compile(r"^[0-9a-f]{16}\Z")
# base64 of base64 text never holds '+' or '/' (ASCII bytes cannot reach those sextets).
_OUTER = re.compile(r"^[A-Za-z0-9]+={0,2}\Z")


class InvalidFas(ValueError):
    """The `fas` query is missing, malformed, forged, replayed or names a gateway we do not serve."""


class FasThrottled(InvalidFas):
    """Too many refused `fas` queries from this TCP peer: it gets no more decryption attempts."""


@dataclass(frozen=True)
class FasRequest:
    hid: str
    clientip: str
    clientmac: str
    gatewayaddress: str
    authdir: str
    originurl: str | None
    client_type: str
    gatewayname: str = ""  # as openNDS sends it (URL-encoded): level 3's auth list is named by its sha256
    level: int = 1

    @property
    def verified(self) -> bool:
        """Only an encrypted query (level 2/3) proves that openNDS names this client."""
        return self.level >= 2

    @property
    def gatewayhash(self) -> str:
        return hashlib.sha256(self.gatewayname.encode()).hexdigest()

    def to_session(self) -> dict:
        return asdict(self)

    @classmethod
    def from_session(cls, data) -> "FasRequest | None":
        try:
            return cls(**data) if isinstance(data, dict) else None
        except TypeError:
            return None


def parse_fas(value: str | None, allowed_gateways: frozenset[str] = frozenset()) -> FasRequest:
    """Decode and check a level-1 `fas` parameter (base64, unsigned); raises InvalidFas with a reason."""
    if not value or len(value) > FAS_MAX:
        raise InvalidFas("missing or oversized fas parameter")
    try:
        text = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode("ascii")
    except (binascii.Error, ValueError):
        raise InvalidFas("fas is not base64 of ASCII text") from None
    return parse_query(text, allowed_gateways, level=1)


def decrypt_fas(value: str | None, iv: str | None, faskey: str) -> tuple[str, bytes]:
    """A level 2/3 query in clear text, and its ciphertext (the replay guard's key)."""
    if not value or len(value) > FAS_MAX or not _OUTER.match(value):
        raise InvalidFas("missing, oversized or non-base64 fas parameter")
    if not iv or not _IV.match(iv):
        raise InvalidFas("iv is not 16 hex characters (is fas_secure_enabled 2 or 3?)")
    try:
        ciphertext = base64.b64decode(base64.b64decode(value, validate=True), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidFas("fas is not base64 of base64") from None
    if not ciphertext or len(ciphertext) % 16:
        raise InvalidFas("fas is not a whole number of AES blocks")
    key = faskey.encode("ascii").ljust(32, b"\0")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv.encode("ascii"))).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        clear = unpadder.update(decryptor.update(ciphertext) + decryptor.finalize()) + unpadder.finalize()
        return clear.decode("ascii"), ciphertext
    except ValueError:  # bad padding or bytes no openNDS query holds: one answer for both
        raise InvalidFas("fas does not decrypt with this faskey") from None


def parse_query(text: str, allowed_gateways: frozenset[str], level: int) -> FasRequest:
    """openNDS's query, strictly: the fields Footfall acts on must each be well-formed."""
    fields: dict[str, str] = {}
    for pair in text.split(", "):
        name, sep, raw = pair.partition("=")
        if sep and name and name not in fields:
            fields[name] = raw
    hid = fields.get("hid", "")
    mac = unquote(fields.get("clientmac", "")).lower()
    gateway = unquote(fields.get("gatewayaddress", ""))
    authdir = unquote(fields.get("authdir", "opennds_auth"))
    gatewayname = fields.get("gatewayname", "")
    if not _HID.match(hid):
        raise InvalidFas("hid is not a sha256 digest (is faskey set and fas_secure_enabled on?)")
    if not MAC.match(mac):
        raise InvalidFas("clientmac is not a MAC address")
    try:
        clientip = str(ipaddress.ip_address(unquote(fields.get("clientip", ""))))
    except ValueError:
        raise InvalidFas("clientip is not an IP address") from None
    if not _authorized_gateway(gateway, allowed_gateways):
        raise InvalidFas(f"gatewayaddress {gateway!r} is not a gateway this portal serves")
    if not _AUTHDIR.match(authdir):
        raise InvalidFas("authdir is malformed")
    if level >= 2 and not _GATEWAYNAME.match(gatewayname):
        raise InvalidFas("gatewayname is missing or malformed")
    return FasRequest(hid=hid, clientip=clientip, clientmac=mac, gatewayaddress=gateway, authdir=authdir,
                      originurl=safe_continue(unquote(fields.get("originurl", ""))),
                      client_type=re.sub(r"[^a-z_]", "", unquote(fields.get("client_type", "")))[:32],
                      gatewayname=gatewayname, level=level)


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
    """openNDS's rhid: what the browser (levels 1-2) or authmon (level 3) presents for this client."""
    return hashlib.sha256((hid + faskey).encode()).hexdigest()


def auth_url(fas: FasRequest, faskey: str, redir: str) -> str:
    """Where the browser goes once consent is recorded (levels 1-2): openNDS's own authentication URL."""
    return (f"http://{fas.gatewayaddress}/{fas.authdir}/?tok={auth_token(fas.hid, faskey)}"
            f"&redir={quote(redir, safe='')}")


def peer_key(address: str) -> str:
    """A TCP peer as a limit key: an IPv6 guest picks any address in its /64, so the /64 is the key."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "peer:?"
    if ip.version == 6:
        if ip.ipv4_mapped is None:
            return "peer:" + str(ipaddress.ip_network(f"{ip}/64", strict=False))
        ip = ip.ipv4_mapped
    return f"peer:{ip}"


class _Bounded:
    """An insertion-ordered map that forgets its oldest entries past `size` (bounded memory)."""

    def __init__(self, size: int) -> None:
        self.size, self.items, self.lock = size, OrderedDict(), threading.Lock()

    def put(self, key, value) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.size:
            self.items.popitem(last=False)


class FailureThrottle(_Bounded):
    """Refused queries per TCP peer; past `limit` in `window` seconds the peer is refused outright.
    Only refusals count (a busy store's guests behind one NAT never trip it by signing in), and
    only peers key it, so no flood of forged parameters can reset or evict a count."""

    def __init__(self, limit: int = 20, window: float = 600, size: int = 20_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(size)
        self.limit, self.window, self.clock = limit, window, clock

    def blocked(self, peer: str) -> bool:
        with self.lock:
            recent = [t for t in self.items.get(peer, ()) if t > self.clock() - self.window]
            return len(recent) >= self.limit

    def fail(self, peer: str) -> None:
        now = self.clock()
        with self.lock:
            recent = [t for t in self.items.get(peer, ()) if t > now - self.window][-self.limit:]
            self.put(peer, recent + [now])


class ReplayGuard(_Bounded):
    """Each ciphertext speaks for the first browser session that shows it: a sniffed or shared
    sign-in link opens nothing in another browser. openNDS draws a fresh IV, hence a fresh
    ciphertext, for every redirect, so an honest reload keeps working and a new visit gets a new one."""

    def __init__(self, ttl: float = 86400, size: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(size)
        self.ttl, self.clock = ttl, clock

    def claim(self, ciphertext: bytes, session_nonce: str) -> bool:
        digest, now = hashlib.sha256(ciphertext).digest(), self.clock()
        with self.lock:
            owner = self.items.get(digest)
            if owner is not None and owner[1] > now - self.ttl:
                return owner[0] == session_nonce
            self.put(digest, (session_nonce, now))
            return True


class OpenNDSGateway:
    name = "opennds"
    enforcing = True

    def __init__(self, faskey: str, level: int = 2, gateways: frozenset[str] = frozenset(),
                 authmon_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()) -> None:
        if not faskey:
            raise ValueError("the opennds gateway needs opennds_faskey (the router's faskey)")
        if level not in LEVELS:
            raise ValueError(f"opennds_secure_level must be 1, 2 or 3, not {level!r}")
        self.faskey, self.level, self.gateways = faskey, level, gateways
        self.throttle, self.replays = FailureThrottle(), ReplayGuard()
        self.authlist = AuthList(authmon_networks) if level == 3 else None
        if level == 1:
            logger.warning("openNDS FAS secure level 1: the fas query is not encrypted, so any guest can claim "
                           "another device's identity. Set fas_secure_enabled 2 (php-cli and php openssl on the "
                           "router) and opennds_secure_level = 2.")

    @classmethod
    def from_settings(cls, settings) -> "OpenNDSGateway":
        gateways = frozenset(g.strip() for g in settings.opennds_gateways.split(",") if g.strip())
        networks = tuple(ipaddress.ip_network(n.strip(), strict=False)
                         for n in settings.opennds_authmon_networks.split(",") if n.strip())
        return cls(settings.opennds_faskey, settings.opennds_secure_level, gateways, networks)

    def open_fas(self, args: Mapping[str, str], peer: str, session_nonce: str) -> FasRequest:
        """The client openNDS sent to the portal, verified at this gateway's level; raises InvalidFas."""
        key = peer_key(peer)
        if self.throttle.blocked(key):
            raise FasThrottled(f"too many refused fas queries from {key}")
        try:
            if self.level == 1:
                return parse_fas(args.get("fas"), self.gateways)
            text, ciphertext = decrypt_fas(args.get("fas"), args.get("iv"), self.faskey)
            fas = parse_query(text, self.gateways, self.level)
            if not self.replays.claim(ciphertext, session_nonce):
                raise InvalidFas("this fas was already opened by another browser session")
            return fas
        except InvalidFas:
            self.throttle.fail(key)
            raise

    def client_mac(self, ip: str) -> str | None:
        return None  # openNDS names the client in the fas parameter

    def authorize(self, grant: Grant) -> None:
        """Nothing to do here: openNDS lets the client out (auth URL, or authmon at level 3)."""

    def revoke(self, mac: str) -> None:
        # Only a portal on the router itself can reach ndsctl; a remote FAS cannot deauthenticate.
        if shutil.which("ndsctl"):
            subprocess.run(["ndsctl", "deauth", mac], capture_output=True, timeout=10)
        else:
            logger.warning("cannot deauthenticate %s: ndsctl is not on this host", mac)

    def restore(self, grants: Iterable[Grant]) -> int:
        return 0  # openNDS keeps its own client list across portal restarts

    def last_activity(self) -> dict[str, datetime.datetime]:
        """Each client's last_active from `ndsctl json`, when the portal runs on the router; a
        remote FAS cannot ask (empty: sign-ins then count from their own time)."""
        if not shutil.which("ndsctl"):
            return {}
        out = subprocess.run(["ndsctl", "json"], capture_output=True, text=True, timeout=10)
        return parse_ndsctl_clients(out.stdout)


def parse_ndsctl_clients(text: str) -> dict[str, datetime.datetime]:
    """MAC -> last_active (naive UTC) of the clients in openNDS 9.10's `ndsctl json`; a client
    without a MAC or a time of its own is left out, and text that holds no JSON object gives nothing."""
    try:  # the JSON object first; a line after it (ndsctl's helpers print to the same stream) is not ours
        data, _ = json.JSONDecoder().raw_decode(text, text.index("{"))
    except ValueError:
        return {}
    clients = data.get("clients") if isinstance(data, dict) else None
    out: dict[str, datetime.datetime] = {}
    for client in (clients.values() if isinstance(clients, dict) else ()):
        if not isinstance(client, dict):
            continue
        mac, active = str(client.get("mac", "")).lower(), str(client.get("last_active", ""))
        if MAC.match(mac) and active.isdigit() and 0 < int(active) < 2**40:
            out[mac] = datetime.datetime.fromtimestamp(int(active), datetime.timezone.utc).replace(tzinfo=None)
    return out
