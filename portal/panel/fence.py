"""The panel, seen from outside `panel_networks`, is an unknown path: same status, body, headers.

A WSGI layer in front of Flask, behind the captive probes (which answer every foreign Host the
same way whatever the path). It runs before routing, before CSRF and before every parameter
check, and rewrites the path of a /panel request from outside into one that no route matches:
from then on Flask treats it exactly as any unknown path, including the checks that look at the
path. A check after routing answers differently (405 for a wrong method, 400 for a missing CSRF
token, a redirect for /panel or //panel/login), and those differences map the panel's routes.
"""
from __future__ import annotations

import functools
import ipaddress
import logging
import re

logger = logging.getLogger(__name__)

PREFIX = "/panel"
# No route matches this path (a test checks it against the app's url_map).
UNKNOWN_PATH = "/.not-found"
_SLASHES = re.compile(r"/{2,}")
# What a reverse proxy adds. Without `trusted_proxy` the peer of a forwarded request is the proxy
# (nginx on 127.0.0.1, inside the default panel_networks), never the guest behind it. With it,
# waitress has already replaced REMOTE_ADDR and removed every other such header.
FORWARDING = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP", "HTTP_X_FORWARDED_PROTO",
              "HTTP_X_FORWARDED_HOST")
_warned = []


@functools.lru_cache(maxsize=8)
def _networks(cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs.split(",") if c.strip())


def allowed_network(ip: str, networks: str) -> bool:
    """Whether `ip` is inside one of the comma-separated CIDRs."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.5 is the guest 10.0.0.5
    return any(address in network for network in _networks(networks))


def forwarded_untrusted(environ, settings) -> bool:
    """Whether a front the portal was not told to believe forwarded this request: its peer
    address is the front's, and says nothing of the client behind it."""
    if settings.trusted_proxy or not any(environ.get(name) for name in FORWARDING):
        return False
    if not _warned:
        _warned.append(True)
        logger.warning("a request came through a proxy, but trusted_proxy is empty: the panel and the "
                       "authmon list refuse every forwarded request (set trusted_proxy to the front's address)")
    return True


def from_panel_network(environ, settings) -> bool:
    """Whether this request comes from inside `panel_networks`, and not through an untrusted front."""
    if forwarded_untrusted(environ, settings):
        return False
    return allowed_network(environ.get("REMOTE_ADDR", ""), settings.panel_networks)


def is_panel_path(path: str) -> bool:
    """Whether routing would lead `path` into the panel (werkzeug merges repeated slashes)."""
    path = _SLASHES.sub("/", path)
    return path == PREFIX or path.startswith(PREFIX + "/")


class PanelFence:
    def __init__(self, wsgi_app, flask_app) -> None:
        self.wsgi_app = wsgi_app
        self.flask_app = flask_app

    def __call__(self, environ, start_response):
        if is_panel_path(environ.get("PATH_INFO", "")):
            settings = self.flask_app.extensions["footfall"].settings  # per call: settings reload
            if not from_panel_network(environ, settings):
                environ["PATH_INFO"] = UNKNOWN_PATH
        return self.wsgi_app(environ, start_response)
