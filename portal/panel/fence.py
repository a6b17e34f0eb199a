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
import re

PREFIX = "/panel"
# No route matches this path (a test checks it against the app's url_map).
UNKNOWN_PATH = "/.not-found"
_SLASHES = re.compile(r"/{2,}")


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
            networks = self.flask_app.extensions["footfall"].settings.panel_networks  # per call: settings reload
            if not allowed_network(environ.get("REMOTE_ADDR", ""), networks):
                environ["PATH_INFO"] = UNKNOWN_PATH
        return self.wsgi_app(environ, start_response)
