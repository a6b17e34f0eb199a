"""Review of issue 12: a TLS front the portal was not told to believe must not open the panel.

deploy/install.sh --tls-cert puts nginx before the portal and sets trusted_proxy. A newcomer who
fronts the portal with nginx but leaves trusted_proxy empty (an edited footfall.toml, a front of
their own) used to get a panel open to every guest: waitress then sees nginx's own address,
127.0.0.1, which the default panel_networks (127.0.0.0/8) lets in. The portal cannot tell which
guest is behind an untrusted front, so a /panel request that carries forwarding headers it was
not told to believe is treated as coming from outside (an unknown path), and the owner is told why.

Real parts: the site install.sh renders, Debian's nginx, a real `footfall portal`.
"""
from __future__ import annotations

import http.client
import socket
import ssl
from pathlib import Path

import pytest

from portal import create_app
from portal.config import load_settings
from portal.db import database
from tests.e2e import nginx
from tests.livecheck import footfall_process

ROOT = Path(__file__).resolve().parents[2]
GUEST_IP = "127.0.0.2"  # where nginx listens, as on the guest interface
GUEST = "127.0.0.3"     # a guest: outside panel_networks
HOST = "portal.test"


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    """The deploy's nginx site before a portal with trusted_proxy empty: (https port, portal port, CA)."""
    nginx.need_nginx()
    tmp = tmp_path_factory.mktemp("front")
    conf, http_port, https_port, ca = nginx.deploy_site(tmp, HOST, GUEST_IP)
    root = tmp / "root"  # where install.sh --root wrote the deploy's files
    # The newcomer's mistake: the front stays, trusted_proxy is emptied. The panel keeps answering
    # 127.0.0.1/32, nginx's own address (GUEST_IP 127.0.0.2 stays outside, as a guest network would).
    portal_env = {"FOOTFALL_DATA_DIR": str(tmp / "data"), "FOOTFALL_GATEWAY": "null", "FOOTFALL_TRUSTED_PROXY": "",
                  "FOOTFALL_PANEL_NETWORKS": "127.0.0.1/32", "FOOTFALL_CONFIG": ""}
    with footfall_process(["portal", "--config", str(root / "etc/footfall/footfall.toml")], env=portal_env) as (proc, port):
        assert port == http_port
        with nginx.running(conf, [(GUEST_IP, http_port), (GUEST_IP, https_port)]):
            yield https_port, http_port, ca


def _ask(conn: http.client.HTTPConnection, path: str, host: str) -> int:
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


class _Guest(http.client.HTTPSConnection):
    """HTTPS from GUEST to nginx on GUEST_IP, the certificate checked for portal.test."""

    def connect(self):
        sock = socket.create_connection((GUEST_IP, self.port), timeout=10, source_address=(GUEST, 0))
        self.sock = self._context.wrap_socket(sock, server_hostname=HOST)


def _through_front(front, path: str) -> int:
    https_port, _, ca = front
    context = ssl.create_default_context()
    context.load_verify_locations(cadata=ca.cert_pem.bytes().decode())
    return _ask(_Guest(HOST, https_port, context=context, timeout=10), path, f"{HOST}:{https_port}")


def test_a_guest_through_an_untrusted_front_cannot_reach_the_panel(front):
    assert _through_front(front, "/panel/login") == 404
    assert _through_front(front, "/panel/users") == 404
    # The visitor pages still answer through it.
    assert _through_front(front, "/privacy?lang=en") == 200


def test_the_panel_still_answers_on_its_own_network_without_a_front(front):
    """The check above can fail: straight to the portal from 127.0.0.1 the panel answers."""
    https_port, port, _ = front
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=("127.0.0.1", 0))
    assert _ask(conn, "/panel/login", f"{HOST}:{https_port}") == 200


@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded", "X-Real-IP", "X-Forwarded-Proto"])
def test_any_forwarding_header_without_a_trusted_proxy_fences_the_panel(tmp_path, header):
    app = create_app(load_settings(environ={}, data_dir=str(tmp_path), portal_url=f"http://{HOST}"))
    try:
        client = app.test_client()
        base = {"REMOTE_ADDR": "127.0.0.1"}
        assert client.get("/panel/login", headers={"Host": HOST}, environ_base=base).status_code == 200
        assert client.get("/panel/login", headers={"Host": HOST, header: "10.77.0.9"},
                          environ_base=base).status_code == 404
    finally:
        database.close()


def test_authmon_polls_through_an_untrusted_front_are_refused(tmp_path):
    """Level 3 behind a front with trusted_proxy empty: the owner who lists the front's address in
    opennds_authmon_networks (the only address the portal sees) would let every guest poll."""
    from tests.conftest import PORTAL_HOST
    from tests.security.opennds_setup import make_app

    app = make_app(tmp_path, opennds_secure_level=3, opennds_authmon_networks="127.0.0.1/32")
    try:
        client = app.test_client()
        form = {"auth_get": "view", "gatewayhash": "a" * 64, "payload": "bm9uZQ=="}  # base64 "none"
        base = {"REMOTE_ADDR": "127.0.0.1"}
        assert client.post("/fas/", data=form, headers={"Host": PORTAL_HOST}, environ_base=base).status_code == 200
        forwarded = client.post("/fas/", data=form, headers={"Host": PORTAL_HOST, "X-Forwarded-For": "10.77.0.9"},
                                environ_base=base)
        assert forwarded.status_code == 403
    finally:
        database.close()
