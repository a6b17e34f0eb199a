"""FAS level 3: the auth list openNDS's authmon polls, and the visitor's wait for it, through Flask."""
import base64
import hashlib
from urllib.parse import quote, unquote

import pytest

from portal import create_app
from portal.config import load_settings
from portal.db import database
from portal.gateway.opennds import auth_token
from portal.gateway.opennds_authmon import CUSTOM, AuthGetRefused, AuthList
from portal.models import Authorization
from tests.conftest import PORTAL_HOST, PortalClient
from tests.portal.opennds_fas import FASKEY, GATEWAYNAME, HID, level2

GWHASH = hashlib.sha256(GATEWAYNAME.encode()).hexdigest()
ROUTER = "10.78.0.1"
RHID = "a" * 64


def poll(action="view", payload="none", gatewayhash=GWHASH) -> dict:
    """What authmon's post-request.php POSTs."""
    return {"auth_get": action, "gatewayhash": gatewayhash, "payload": base64.b64encode(payload.encode()).decode()}


@pytest.fixture
def authlist():
    import ipaddress
    clock = [1000.0]
    al = AuthList((ipaddress.ip_network("10.78.0.1/32"),), ttl=120, keep=600, clock=lambda: clock[0])
    al.clock_value = clock
    return al


def test_view_lists_pending_clients_as_authmon_reads_them(authlist):
    assert authlist.answer(poll(), ROUTER) == "*"
    authlist.add(GWHASH, RHID, 3601)
    authlist.add("b" * 64, "c" * 64, 60)  # another gateway's client is not listed here
    body = authlist.answer(poll(), ROUTER)
    assert body == "* " + quote(f"{RHID} 61 0 0 0 0 {CUSTOM}", safe="")
    # authmon turns %XX back into bytes and runs `ndsctl auth` with the line.
    assert unquote(body[2:]).split() == [RHID, "61", "0", "0", "0", "0", CUSTOM]
    assert authlist.state(GWHASH, RHID) == "pending"


def test_acknowledged_clients_leave_the_list_and_are_done(authlist):
    authlist.add(GWHASH, RHID, 600)
    authlist.add(GWHASH, "d" * 64, 600)
    assert authlist.answer(poll(payload=f"* {RHID}"), ROUTER) == "ack"
    assert authlist.state(GWHASH, RHID) == "done" and authlist.state(GWHASH, "d" * 64) == "pending"
    assert RHID not in authlist.answer(poll(), ROUTER)
    assert authlist.answer(poll(payload="*"), ROUTER) == "ack"  # nothing authenticated this round


def test_unacknowledged_clients_time_out(authlist):
    authlist.add(GWHASH, RHID, 600)
    authlist.clock_value[0] += 121
    assert authlist.state(GWHASH, RHID) == "timeout" and authlist.answer(poll(), ROUTER) == "*"
    authlist.clock_value[0] += 600
    authlist.answer(poll(), ROUTER)
    assert authlist.state(GWHASH, RHID) == "unknown"


def test_the_list_fits_what_authmon_reads(authlist):
    for i in range(40):
        authlist.add(GWHASH, f"{i:064x}", 600)
    body = authlist.answer(poll(), ROUTER)
    assert len(body) <= 1026 and body.startswith("* ")
    listed = [unquote(item).split()[0] for item in body[2:].split(" ")]
    # 103 characters per client ("%20"-separated line and one space): nine fit in 1024.
    assert listed == [f"{i:064x}" for i in range(9)]
    authlist.answer(poll(payload="* " + " ".join(listed)), ROUTER)
    assert unquote(authlist.answer(poll(), ROUTER)[2:]).split()[0] == f"{9:064x}"  # the next ones follow


def test_clear_and_list_never_drop_a_waiting_client(authlist):
    authlist.add(GWHASH, RHID, 600)
    assert authlist.answer(poll("clear"), ROUTER) == ""
    assert RHID in authlist.answer(poll("list"), ROUTER)
    assert RHID in authlist.answer(poll("view"), ROUTER)
    assert authlist.answer(poll("deauthed", "method=timeout"), ROUTER) == "ack"


@pytest.mark.parametrize("form, peer, status", [
    (poll(), "10.77.0.114", 403),
    (poll(), "not an address", 403),
    (poll(gatewayhash="x" * 64), ROUTER, 400),
    (poll("steal"), ROUTER, 400),
    ({**poll(), "payload": "%%%"}, ROUTER, 400),
    (poll(payload="* ../../etc/passwd"), ROUTER, 400),
    ({**poll(), "payload": "A" * 9000}, ROUTER, 400),
])
def test_refused_polls(authlist, form, peer, status):
    authlist.add(GWHASH, RHID, 600)
    with pytest.raises(AuthGetRefused) as refused:
        authlist.answer(form, peer)
    assert refused.value.status == status
    assert authlist.state(GWHASH, RHID) == "pending"


@pytest.fixture
def level3_app(tmp_path):
    settings = load_settings(environ={}, data_dir=str(tmp_path / "data"), portal_url=f"http://{PORTAL_HOST}",
                             gateway="opennds", opennds_faskey=FASKEY, opennds_secure_level=3,
                             opennds_authmon_networks=f"{ROUTER}/32", session_seconds=3600)
    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    database.close()


def test_level3_visitor_waits_for_authmon_then_goes_online(level3_app):
    guest = PortalClient(level3_app.test_client(), ip="10.77.0.114")
    router = PortalClient(level3_app.test_client(), ip=ROUTER)
    assert guest.get("/fas/", query_string=level2()).status_code == 200
    submit = guest.post("/connect", data={"csrf_token": guest.token("/?form=1"), "email": "l3@example.com",
                                          "terms": "yes", "continue": "http://example.com/"})
    assert submit.status_code == 303 and submit.headers["Location"] == "/fas/wait"
    assert Authorization.get().ip == "10.77.0.114"
    waiting = guest.get("/fas/wait", headers={"Accept-Language": "en"})
    assert waiting.status_code == 200 and waiting.headers["Refresh"] == "2"
    assert "Connecting you" in waiting.get_data(as_text=True)

    rhid = auth_token(HID, FASKEY)
    listed = router.post("/fas/", data=poll())
    assert listed.status_code == 200 and listed.get_data(as_text=True) == "* " + quote(
        f"{rhid} 60 0 0 0 0 {CUSTOM}", safe="")
    assert router.post("/fas/", data=poll(payload=f"* {rhid}")).get_data(as_text=True) == "ack"

    done = guest.get("/fas/wait")
    assert done.status_code == 303 and done.headers["Location"] == "/online?continue=http://example.com/"
    assert guest.get("/fas/wait").status_code == 303  # the wait is over: back to the portal


def test_level3_wait_times_out_with_a_clear_page(level3_app):
    guest = PortalClient(level3_app.test_client(), ip="10.77.0.114")
    guest.get("/fas/", query_string=level2())
    guest.post("/connect", data={"csrf_token": guest.token("/?form=1"), "email": "l3@example.com", "terms": "yes"})
    authlist = level3_app.extensions["footfall"].gateway.authlist
    authlist.clock = lambda: 10 ** 9  # long after the router should have polled
    page = guest.get("/fas/wait", headers={"Accept-Language": "en"})
    assert page.status_code == 504 and "did not confirm" in page.get_data(as_text=True)


def test_a_guest_cannot_poll_the_auth_list(level3_app):
    guest = PortalClient(level3_app.test_client(), ip="10.77.0.114")
    guest.get("/fas/", query_string=level2())
    guest.post("/connect", data={"csrf_token": guest.token("/?form=1"), "email": "l3@example.com", "terms": "yes"})
    stolen = guest.post("/fas/", data=poll())
    assert stolen.status_code == 403 and auth_token(HID, FASKEY) not in stolen.get_data(as_text=True)
    assert guest.post("/fas/", data=poll(payload=f"* {auth_token(HID, FASKEY)}")).status_code == 403
    assert guest.get("/fas/wait").status_code == 200  # still waiting: the forged ack changed nothing
