"""Every request for a foreign Host is a captive probe: redirect it to the splash page."""
from __future__ import annotations

import re
from urllib.parse import quote

from flask import Response, current_app, request
from flask.sessions import SecureCookieSessionInterface

from portal.safeurl import CONTINUE_MAX

_HOST_RE = re.compile(r"^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?(?::[0-9]{1,5})?$")

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


def original_url(environ) -> str | None:
    """The URL the device asked for, re-quoted; None when the Host is not a plain host name."""
    host = environ.get("HTTP_HOST", "").lower()
    if not _HOST_RE.match(host):
        return None
    path = quote(environ.get("PATH_INFO", "/"), safe="/:@!$&'()*+,;=-._~%")
    query = environ.get("QUERY_STRING", "")
    url = f"http://{host}{path}" + (f"?{quote(query, safe='=&;%+-._~!$()*,:@/?')}" if query else "")
    return url if len(url) <= CONTINUE_MAX else f"http://{host}/"


def probe_guard() -> Response | None:
    """Before any view: answer requests that were meant for another host."""
    rt = current_app.extensions["footfall"]
    if request.environ.get("HTTP_HOST", "").lower() in rt.own_hosts:
        return None
    environ = request.environ
    environ["footfall.probe"] = True
    if not rt.gateway.enforcing and rt.visitors.online.until(request.remote_addr or "") is not None:
        answer = ONLINE_ANSWERS.get(environ.get("PATH_INFO", ""))
        if answer is not None:
            status, body, mimetype = answer
            return Response(body, status=status, mimetype=mimetype, headers={"Cache-Control": "no-store"})
        target = rt.portal_url + "/online"
    else:
        target = rt.portal_url + "/"
        rt.funnel.hit("probe")
    url = original_url(environ)
    if url:
        target += "?continue=" + quote(url, safe="")
    # 302 with a tiny body: never the "online" answer, never cached by the OS probe.
    return Response("", status=302, headers={"Location": target, "Cache-Control": "no-store"})


class PortalSessionInterface(SecureCookieSessionInterface):
    """No session for probes: they never need one, and opening it costs on the hottest path."""

    def open_session(self, app, request):
        if request.environ.get("HTTP_HOST", "").lower() not in app.extensions["footfall"].own_hosts:
            return self.make_null_session(app)
        return super().open_session(app, request)
