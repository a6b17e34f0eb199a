"""Standard Webhooks on the wire: secrets, signatures, safe targets and one bounded POST.

Pure (no database): the appliance (portal/webhooks/queue.py) and the central store
(central/webhooks.py) both send through here. The specification (standardwebhooks.com):

- the secret is `whsec_` + base64 of random bytes; the key is those bytes;
- each request carries `webhook-id` (the same on every retry of a message: receivers dedupe on
  it), `webhook-timestamp` (epoch seconds of this attempt: receivers refuse stale ones) and
  `webhook-signature`: `v1,` + base64 of HMAC-SHA256(key, "{id}.{timestamp}.{body}");
- the body is JSON {"type", "timestamp", "data"}.

A target is refused before any byte is sent when it is not https (plain http only to a loopback
address, and only with the explicit `webhook_allow_loopback` test setting), carries credentials,
or resolves to an address that is not public (private, loopback, link-local, multicast, reserved,
carrier-grade NAT...). The connection goes to the address that was checked (no second DNS answer
can swap it), redirects are never followed (a 3xx is a failure), every socket operation has a
timeout and at most MAX_ANSWER bytes of the answer are read.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import ipaddress
import json
import random
import re
import secrets
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

SECRET_PREFIX = "whsec_"
URL_MAX = 2048
DEADLINE_FACTOR = 2  # the whole exchange: at most twice the per-operation timeout
MAX_ANSWER = 4096  # bytes of a receiver's answer we read (kept for the dead-letter list, shortened)
_UNSAFE = re.compile(r"[\x00-\x20\x7f<>\"'\\`{}|^]")
_SECRET = re.compile(r"^whsec_[A-Za-z0-9+/]{32,88}={0,2}\Z")


class TargetRefused(ValueError):
    """A URL we will not send to; args[0] is a reason code (err_webhook_*), args[1] the detail."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(code, detail)
        self.code, self.detail = code, detail


def new_secret() -> str:
    """A fresh signing secret, in the form receivers' libraries read (whsec_ + base64 of 24 bytes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def secret_key(secret: str) -> bytes:
    if not _SECRET.match(secret):
        raise ValueError("a webhook secret is whsec_ followed by base64")
    return base64.b64decode(secret[len(SECRET_PREFIX):])


def webhook_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header's value (one v1 signature)."""
    mac = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def body(event_type: str, at: str, data: dict) -> bytes:
    """The JSON body: {"type", "timestamp" (when it happened, ISO 8601 UTC), "data"}."""
    return json.dumps({"type": event_type, "timestamp": at, "data": data}, separators=(",", ":"),
                      ensure_ascii=False, sort_keys=True).encode()


def headers(secret: str, msg_id: str, timestamp: int, payload: bytes) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": webhook_signature(secret, msg_id, timestamp, payload),
            "Content-Type": "application/json", "User-Agent": "Footfall-Webhooks/1"}


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent


def parse_url(url: str, allow_loopback: bool = False) -> Target:
    """The URL's parts, or TargetRefused: https only (http to loopback with the test setting)."""
    if not isinstance(url, str) or not url or len(url) > URL_MAX or _UNSAFE.search(url) or not url.isprintable():
        raise TargetRefused("err_webhook_url")  # isprintable: no bidi override or zero-width to spoof the panel's list
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetRefused("err_webhook_url") from None
    if not parts.hostname or parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise TargetRefused("err_webhook_url")
    if parts.fragment:
        raise TargetRefused("err_webhook_url")
    if parts.scheme == "https":
        pass
    elif parts.scheme == "http" and allow_loopback and _is_loopback_name(parts.hostname):
        pass
    else:
        raise TargetRefused("err_webhook_https")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path)


def _is_loopback_name(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_address(address: str, allow_loopback: bool = False) -> bool:
    """Whether we may connect to this IP: public only (loopback with the test setting)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if ip.is_loopback:
        return allow_loopback
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address carried inside an IPv6 one (6to4 2002:7f00:1::, Teredo, NAT64 64:ff9b::)
        # reaches that IPv4 host through a relay: it must be public too (never loopback).
        embedded = [ip.sixtofour, ip.teredo[1] if ip.teredo else None,
                    ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None]
        if any(e is not None and not _public(e) for e in embedded):
            return False
    return _public(ip)


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local or ip.is_private
                                 or ip.is_loopback or ip.is_unspecified)


Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    return list(dict.fromkeys(info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)))


def check_target(url: str, allow_loopback: bool = False, resolver: Resolver = resolve) -> tuple[Target, str]:
    """The target and the one address to connect to; TargetRefused when any address is not allowed
    (a name that resolves to both a public and a private address is refused whole)."""
    target = parse_url(url, allow_loopback)
    try:
        addresses = resolver(target.host, target.port)
    except (OSError, UnicodeError):
        raise TargetRefused("err_webhook_dns", target.host) from None
    if not addresses:
        raise TargetRefused("err_webhook_dns", target.host)
    for address in addresses:
        if not allowed_address(address, allow_loopback):
            raise TargetRefused("err_webhook_private", address)
    return target, addresses[0]


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to the checked address, with SNI and the certificate checked for the URL's host name."""

    def __init__(self, host: str, address: str, port: int, timeout: float, context: ssl.SSLContext):
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, address: str, port: int, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


def bounded(resolver: Resolver, seconds: float) -> Resolver:
    """The resolver, given at most `seconds` (the receiver's name server is the receiver's: a slow
    one must not hold the scheduler). The look-up left behind ends on its own, in a daemon thread."""
    def resolve_within(host: str, port: int) -> list[str]:
        box: dict = {}

        def run():
            try:
                box["addresses"] = resolver(host, port)
            except Exception as exc:  # handed to the caller below
                box["error"] = exc
        thread = threading.Thread(target=run, name="webhook-dns", daemon=True)
        thread.start()
        thread.join(seconds)
        if thread.is_alive():
            raise OSError(f"no answer from the name server within {seconds:g} s")
        if "error" in box:
            raise box["error"]
        return box["addresses"]
    return resolve_within


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int | None  # the receiver's HTTP status; None when there was no answer
    error: str          # why it failed, short (empty when ok)


def post(url: str, headers_: dict[str, str], payload: bytes, timeout: float, allow_loopback: bool = False,
         resolver: Resolver = resolve, ca_file: str = "") -> Outcome:
    """One POST; only a 2xx is a success. Never raises for the network or the receiver's answer.
    `timeout` bounds each socket operation; the whole exchange is cut at DEADLINE_FACTOR times it
    (a receiver dripping a byte at a time cannot hold the scheduler)."""
    try:
        target, address = check_target(url, allow_loopback, bounded(resolver, timeout))
    except TargetRefused as exc:
        return Outcome(False, None, printable(f"refused target: {exc.code} {exc.detail}".strip()))
    if target.scheme == "https":
        context = ssl.create_default_context(cafile=ca_file or None)
        conn: http.client.HTTPConnection = _PinnedHTTPS(target.host, address, target.port, timeout, context)
    else:
        conn = _PinnedHTTP(target.host, address, target.port, timeout)
    cut = threading.Event()

    def cut_off():
        cut.set()
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked read; close() follows below
            except OSError:
                pass
    timer = threading.Timer(timeout * DEADLINE_FACTOR, cut_off)
    timer.daemon = True
    timer.start()
    try:
        conn.request("POST", target.path, body=payload, headers=headers_)
        response = conn.getresponse()
        answer = response.read(MAX_ANSWER)  # bounded: the rest is never read
        status = response.status
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if cut.is_set():
            return Outcome(False, None, f"no complete answer within {timeout * DEADLINE_FACTOR:g} s")
        return Outcome(False, None, printable(f"{exc.__class__.__name__}: {str(exc)[:160]}"))
    finally:
        timer.cancel()
        conn.close()
    if cut.is_set():
        return Outcome(False, None, f"no complete answer within {timeout * DEADLINE_FACTOR:g} s")
    if 200 <= status < 300:
        return Outcome(True, status, "")
    if 300 <= status < 400:
        return Outcome(False, status, "redirect not followed")
    return Outcome(False, status, printable(f"HTTP {status}: {answer[:160].decode('utf-8', 'replace')}"))


def printable(text: str) -> str:
    """A receiver's words as we keep and show them: no control characters (a terminal escape in a
    dead letter would run in the operator's `footfall central webhook list`), no line breaks, no
    bidirectional overrides; each such character becomes '?'."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


BACKOFF_BASE, BACKOFF_CAP = 60.0, 6 * 3600.0


def backoff(attempts: int, rng: random.Random | None = None) -> float:
    """Seconds before the next try after `attempts` failures: exponential, capped, jittered."""
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1))
    return delay * (rng or random).uniform(0.5, 1.0)


def pseudonym(key: bytes, uid: str) -> str:
    """A stable keyed pseudonymous id for a person (never the database id, never the lead's uid)."""
    return "p_" + hmac.new(key, f"webhook.person:{uid}".encode(), hashlib.sha256).hexdigest()[:32]
