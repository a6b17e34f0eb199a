"""Every request for a foreign Host is a captive probe: redirect it to the splash page."""
from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

from portal.safeurl import CONTINUE_MAX

_HOST_RE = re.compile(r"^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?(?::[0-9]{1,5})?\Z")

# What the OS probes expect once a device is online (only seen with the null gateway: an
# enforcing gateway forwards authorized devices, so their probes never reach the portal).
ONLINE_ANSWERS: dict[str, tuple[int, str, str]] = {
    "/generate_204": (204, "", "text/plain"),
    "/gen_204": (204, "", "text/plain"),
    "/hotspot-detect.html": (200, "<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>", "text/html"),
    "/library/test/success.html": (200, "<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>", "text/html"),
    "/connecttest.txt": (200, "Microsoft Connect Test", "text/plain"),
    "/ncsi.txt": (200, "Microsoft NCSI", "text/plain"),
    "/success.txt": (200, "success\n", "text/plain"),
    "/check_network_status.txt": (200, "NetworkManager is online\n", "text/plain"),
}


# Hosts that exist only to be probed: a URL on them is never a page the visitor wanted to read.
PROBE_HOSTS = frozenset({
    "captive.apple.com", "connectivitycheck.gstatic.com", "connectivitycheck.android.com", "clients1.google.com",
    "clients3.google.com", "connect.rom.miui.com", "connectivitycheck.platform.hicloud.com",
    "www.msftconnecttest.com", "www.msftncsi.com", "detectportal.firefox.com", "nmcheck.gnome.org",
    "network-test.debian.org", "connectivity-check.ubuntu.com", "connectivitycheck.cbg-app.huawei.com",
})


def is_probe(url: str) -> bool:
    """Whether a URL the phone asked for was its OS's captive probe rather than a page."""
    parts = urlsplit(url)
    return (parts.hostname or "") in PROBE_HOSTS or parts.path in ONLINE_ANSWERS or parts.path == "/canonical.html"


def original_url(environ) -> str | None:
    """The URL the device asked for, re-quoted; None when the Host is not a plain host name."""
    host = environ.get("HTTP_HOST", "").lower()
    if not _HOST_RE.match(host):
        return None
    path = quote(environ.get("PATH_INFO", "/"), safe="/:@!$&'()*+,;=-._~%")
    query = environ.get("QUERY_STRING", "")
    url = f"http://{host}{path}" + (f"?{quote(query, safe='=&;%+-._~!$()*,:@/?')}" if query else "")
    return url if len(url) <= CONTINUE_MAX else f"http://{host}/"


_STATUS = {200: "200 OK", 204: "204 No Content", 302: "302 Found"}


def answer(rt, environ) -> tuple[str, list[tuple[str, str]], bytes]:
    """A captive probe's answer: a redirect to the splash page with the original URL, never the
    "online" answer while the device is captive (and, with the null gateway, the real online
    answer once it is not)."""
    if not rt.gateway.enforcing and rt.visitors.online.until(environ.get("REMOTE_ADDR", "")) is not None:
        rt.last_seen.touch(environ["REMOTE_ADDR"])  # a sign of life of a signed-in device (signin_visits)
        known = ONLINE_ANSWERS.get(environ.get("PATH_INFO", ""))
        if known is not None:
            status, body, mimetype = known
            data = body.encode()
            return _STATUS[status], [("Content-Type", f"{mimetype}; charset=utf-8"), ("Content-Length", str(len(data))),
                                     ("Cache-Control", "no-store")], data
        target = rt.portal_url + "/online"
    else:
        target = rt.portal_url + "/"
        rt.funnel.hit("probe")
    url = original_url(environ)
    if url:
        target += "?continue=" + quote(url, safe="")
    # 302 with an empty body, never cached by the OS probe.
    return _STATUS[302], [("Location", target), ("Content-Length", "0"), ("Cache-Control", "no-store")], b""


class CaptiveProbes:
    """WSGI middleware in front of Flask: a request for any host but the portal's own is a
    captive probe, answered here. Probes are most of a portal's traffic, and answering them
    without a Flask request context, hooks and header objects is what keeps the probe path
    near a bare redirect (see tests/perf/bench_portal.py)."""

    def __init__(self, wsgi_app, flask_app) -> None:
        self.wsgi_app = wsgi_app
        self.flask_app = flask_app

    def __call__(self, environ, start_response):
        rt = self.flask_app.extensions["footfall"]  # read per call: a settings save replaces it
        if environ.get("HTTP_HOST", "").lower() in rt.own_hosts:
            return self.wsgi_app(environ, start_response)
        status, headers, body = answer(rt, environ)
        start_response(status, headers)
        return [body]
