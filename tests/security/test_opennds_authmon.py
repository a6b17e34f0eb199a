"""Attack (FAS level 3): a guest polls the portal as if it were openNDS's authmon, to read the list
of clients being let out, to acknowledge them (their browsers would claim "online" while the
router never let them out) or to clear it. Only opennds_authmon_networks may poll."""
import base64

import pytest

from portal.db import database
from portal.gateway.opennds import auth_token
from tests.conftest import PortalClient
from tests.portal.opennds_fas import FASKEY, HID, level2
from tests.security.opennds_setup import ATTACKER_IP, make_app

ROUTER = "10.78.0.1"


def poll(action, payload, gatewayhash):
    return {"auth_get": action, "gatewayhash": gatewayhash, "payload": base64.b64encode(payload.encode()).decode()}


@pytest.fixture
def level3(tmp_path):
    app = make_app(tmp_path, opennds_secure_level=3, opennds_authmon_networks=f"{ROUTER}/32")
    yield app
    database.close()


def test_a_guest_cannot_read_acknowledge_or_clear_the_auth_list(level3):
    victim = PortalClient(level3.test_client(), ip="10.77.0.50")
    victim.get("/fas/", query_string=level2(clientip="10.77.0.50"))
    assert victim.post("/connect", data={"csrf_token": victim.token("/?form=1"), "email": "v@example.com",
                                         "terms": "yes"}).status_code == 303
    gatewayhash = level3.extensions["footfall"].gateway.authlist._entries.copy().popitem()[0][0]
    rhid = auth_token(HID, FASKEY)
    guest = PortalClient(level3.test_client(), ip=ATTACKER_IP)
    for action, payload in (("view", "none"), ("list", "none"), ("view", f"* {rhid}"), ("clear", "none")):
        answer = guest.post("/fas/", data=poll(action, payload, gatewayhash))
        assert answer.status_code == 403 and rhid not in answer.get_data(as_text=True)
    assert victim.get("/fas/wait").status_code == 200  # still waiting for the real router
    router = PortalClient(level3.test_client(), ip=ROUTER)
    # Even the router's own start-up "clear" and a "list" leave her in the list until it acknowledges.
    router.post("/fas/", data=poll("clear", "none", gatewayhash))
    router.post("/fas/", data=poll("list", "none", gatewayhash))
    assert rhid in router.post("/fas/", data=poll("view", "none", gatewayhash)).get_data(as_text=True)
    assert router.post("/fas/", data=poll("view", f"* {rhid}", gatewayhash)).get_data(as_text=True) == "ack"
    assert victim.get("/fas/wait").status_code == 303


def test_authmon_polls_are_refused_at_levels_1_and_2(tmp_path):
    app = make_app(tmp_path)
    try:
        router = PortalClient(app.test_client(), ip=ROUTER)
        assert router.post("/fas/", data=poll("view", "none", "a" * 64)).status_code == 404
    finally:
        database.close()
