"""Shared by the openNDS attack tests: a portal that is the FAS of an openNDS router, and a victim."""
from __future__ import annotations

import pytest

from portal import create_app
from portal.config import load_settings
from portal.db import database
from tests.conftest import PORTAL_HOST, PortalClient
from tests.portal.opennds_fas import FASKEY, level2

VICTIM_MAC, VICTIM_IP, VICTIM_NAME = "02:aa:bb:cc:dd:01", "10.77.0.50", "Victim Nguyen"
ATTACKER_IP = "10.77.0.66"


def make_app(tmp_path, **settings):
    values = {"data_dir": str(tmp_path / "data"), "portal_url": f"http://{PORTAL_HOST}", "gateway": "opennds",
              "opennds_faskey": FASKEY, **settings}
    app = create_app(load_settings(environ={}, **values))
    app.config["TESTING"] = True
    return app


@pytest.fixture
def fas_app(tmp_path):
    app = make_app(tmp_path)
    yield app
    database.close()


def sign_in_victim(app) -> dict[str, str]:
    """The victim's own phone signs in through openNDS, with a name; returns the fas it was sent."""
    victim = PortalClient(app.test_client(), ip=VICTIM_IP)
    sent = level2(clientmac=VICTIM_MAC, clientip=VICTIM_IP)
    assert victim.get("/fas/", query_string=sent).status_code == 200
    done = victim.post("/connect", data={"csrf_token": victim.token("/?form=1"), "email": "victim@example.com",
                                         "name": VICTIM_NAME, "terms": "yes"})
    assert done.status_code == 303
    return sent
