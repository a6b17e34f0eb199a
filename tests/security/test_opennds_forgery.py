"""Attack: a guest writes its own `fas` naming another device (MACs are visible over the air),
replays a sniffed one or tampers with its ciphertext, to be greeted as that person, read their
data or erase it. Levels 2/3 refuse all of it; level 1 only runs when the owner says so."""
import base64
import logging

import pytest

from portal.db import database
from portal.models import Lead
from tests.conftest import PortalClient, row_counts
from tests.portal.opennds_fas import ciphertext_of, encrypt, level1, level2, query, wrap
from tests.security.opennds_setup import (ATTACKER_IP, VICTIM_IP, VICTIM_MAC, VICTIM_NAME, fas_app,  # noqa: F401
                                          make_app, sign_in_victim)


def attacker(app) -> PortalClient:
    return PortalClient(app.test_client(), ip=ATTACKER_IP)


def test_the_victim_is_greeted_on_her_own_phone(fas_app):
    """The control: what the attacker is after exists, and the real client gets it."""
    sign_in_victim(fas_app)
    again = PortalClient(fas_app.test_client(), ip=VICTIM_IP)
    page = again.get("/fas/", query_string=level2(clientmac=VICTIM_MAC, clientip=VICTIM_IP))
    # Recognised (one tap back online), but named only to a session that proved her contact.
    assert page.status_code == 200 and 'action="/welcome-back"' in page.get_data(as_text=True)
    assert VICTIM_NAME not in page.get_data(as_text=True)


FORGERIES = {
    "level-1 base64 with the victim's MAC": lambda: {"fas": level1(clientmac=VICTIM_MAC)},
    "level-1 base64 with a made-up iv": lambda: {"fas": level1(clientmac=VICTIM_MAC), "iv": "0123456789abcdef"},
    "encrypted with a guessed faskey": lambda: level2(faskey="ChangeMe0123456", clientmac=VICTIM_MAC),
    "encrypted with an empty faskey": lambda: encrypt(query(clientmac=VICTIM_MAC), faskey=""),
}


@pytest.mark.parametrize("name", FORGERIES)
def test_forged_fas_shows_nothing_and_changes_nothing(fas_app, name):
    sign_in_victim(fas_app)
    before = row_counts()
    guest = attacker(fas_app)
    page = guest.get("/fas/", query_string=FORGERIES[name](), headers={"Accept-Language": "en"})
    body = page.get_data(as_text=True)
    assert page.status_code == 400 and "This sign-in link is not valid" in body
    assert VICTIM_NAME not in body and "victim" not in body.lower() and 'action="/welcome-back"' not in body
    # Nothing of the victim behind the attacker's session either: my data, erase, welcome back.
    assert "v***" not in guest.get("/my-data").get_data(as_text=True)
    guest.post("/my-data/erase", data={"csrf_token": guest.token("/?form=1"), "confirm": "yes"})
    guest.post("/welcome-back", data={"csrf_token": guest.token("/?form=1")})
    assert row_counts() == before
    assert Lead.get().erased_at is None


def test_a_sniffed_link_opens_nothing_in_another_browser(fas_app):
    sent = sign_in_victim(fas_app)
    before = row_counts()
    page = attacker(fas_app).get("/fas/", query_string=sent, headers={"Accept-Language": "en"})
    assert page.status_code == 400 and 'action="/welcome-back"' not in page.get_data(as_text=True)
    assert row_counts() == before


def _tampered(sent: dict[str, str]):
    raw = ciphertext_of(sent["fas"])
    for index in range(len(raw)):  # one flipped bit in every byte, in turn
        flipped = bytearray(raw)
        flipped[index] ^= 0x04
        yield {"fas": wrap(bytes(flipped)), "iv": sent["iv"]}
    for index in range(16):
        iv = bytearray(sent["iv"].encode())
        iv[index] ^= 0x01  # '0'<->'1', 'a'<->'`'...: an IV that may still be hex
        yield {"fas": sent["fas"], "iv": iv.decode()}
    yield {"fas": wrap(raw[16:]), "iv": sent["iv"]}  # first block dropped
    yield {"fas": wrap(raw + raw[-16:]), "iv": sent["iv"]}  # a block repeated


def test_tampered_ciphertext_is_refused(fas_app):
    """CBC is unauthenticated: a sniffed query, tampered with, never turns into one we accept. A
    flipped ciphertext bit garbles its whole block (refused by parsing); a flipped IV bit may leave
    a valid query with another hid, but the ciphertext is the victim's, already claimed."""
    sent = sign_in_victim(fas_app)
    gateway = fas_app.extensions["footfall"].gateway
    gateway.throttle.limit = 10 ** 6  # every variant must be refused on its merits, not by the throttle
    before = row_counts()
    guest = attacker(fas_app)
    statuses = {guest.get("/fas/", query_string=variant).status_code for variant in _tampered(sent)}
    assert statuses == {400}
    assert row_counts() == before


def test_every_refusal_looks_the_same(fas_app):
    """No padding oracle: bad padding, bad content and a foreign gateway answer byte for byte alike."""
    sent = level2()
    raw = ciphertext_of(sent["fas"])
    bad_padding = {"fas": wrap(raw[:-16] + bytes(16)), "iv": sent["iv"]}
    bad_content = encrypt("hid=nope, clientmac=02:aa:bb:cc:dd:01")
    foreign = level2(gatewayaddress="8.8.8.8:2050")
    not_base64 = {"fas": "!!!", "iv": sent["iv"]}
    answers = set()
    for variant in (bad_padding, bad_content, foreign, not_base64):
        response = attacker(fas_app).get("/fas/", query_string=variant)
        answers.add((response.status_code, response.get_data()))
    assert len(answers) == 1 and answers.pop()[0] == 400


def test_level1_runs_only_by_setting_and_never_greets_by_a_claim(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="portal.gateway.opennds"):
        app = make_app(tmp_path, opennds_secure_level=1)
    try:
        assert [r for r in caplog.records if "secure level 1" in r.getMessage()]
        victim = PortalClient(app.test_client(), ip=VICTIM_IP)
        assert victim.get("/fas/", query_string={"fas": level1(clientmac=VICTIM_MAC)}).status_code == 200
        victim.post("/connect", data={"csrf_token": victim.token("/?form=1"), "email": "victim@example.com",
                                      "name": VICTIM_NAME, "terms": "yes"})
        page = attacker(app).get("/fas/", query_string={"fas": level1(clientmac=VICTIM_MAC)})
        # Not recognised by a claim: the form, never the one-tap welcome back of her record.
        assert page.status_code == 200 and 'action="/welcome-back"' not in page.get_data(as_text=True)
        assert 'name="email"' in page.get_data(as_text=True)
    finally:
        database.close()


def test_the_default_level_refuses_level1_queries(fas_app):
    captured = base64.b64encode(query().encode()).decode()
    assert attacker(fas_app).get("/fas/", query_string={"fas": captured}).status_code == 400
