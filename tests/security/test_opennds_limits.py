"""Attack: forged `fas` values used to reset the per-device and per-IP limits (each forged identity
got fresh counters) and, about 10,000 of them, to flush the shared limiter. Limits now key on what
a guest cannot forge: the identity openNDS encrypted (levels 2/3) or the TCP peer (level 1)."""
import pytest

from portal.db import database
from portal.gateway.opennds import FasThrottled
from tests.conftest import PortalClient
from tests.portal.opennds_fas import level1, level2
from tests.security.opennds_setup import make_app

FLOOD = 10_000
GUEST_IP, GUEST_MAC = "10.77.0.70", "02:aa:bb:cc:dd:70"


def exhaust(guest: PortalClient, limit: int) -> None:
    """Spend the guest's form budget with submissions missing the terms box."""
    token = guest.token("/?form=1")
    for _ in range(limit):
        assert guest.post("/connect", data={"csrf_token": token, "email": "x@example.com"}).status_code == 422
    assert guest.post("/connect", data={"csrf_token": token, "email": "x@example.com"}).status_code == 429


def test_forged_fas_flood_neither_resets_nor_flushes_the_limits(tmp_path):
    app = make_app(tmp_path, rate_limit_count=3)
    try:
        rt = app.extensions["footfall"]
        guest = PortalClient(app.test_client(), ip=GUEST_IP)
        assert guest.get("/fas/", query_string=level2(clientmac=GUEST_MAC, clientip=GUEST_IP)).status_code == 200
        exhaust(guest, 3)
        keys_before = len(rt.limiter.bucket("forms"))
        forged = [{"fas": level1(clientmac=f"02:00:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}")}
                  for i in range(FLOOD)]  # a new "device" every time, all from the guest's own TCP peer
        answers: dict[int, int] = {}
        for query in forged[:1000]:  # through HTTP; the rest through the function the view calls
            status = guest.get("/fas/", query_string=query).status_code
            answers[status] = answers.get(status, 0) + 1
        # Refused without a decryption after 20 refusals (429): no padding oracle to query.
        assert answers == {400: 20, 429: 980}
        for query in forged[1000:]:
            with pytest.raises(FasThrottled):
                rt.gateway.open_fas(query, GUEST_IP, "attacker-session")
        assert len(rt.limiter.bucket("forms")) == keys_before  # no forged identity ever reached the limiter
        assert len(rt.gateway.throttle.items) == 1  # one TCP peer, one refusal counter
        token = guest.token("/?form=1")
        assert guest.post("/connect", data={"csrf_token": token, "email": "x@example.com"}).status_code == 429
        # Another guest, untouched by the flood, keeps its own budget.
        other = PortalClient(app.test_client(), ip="10.77.0.71")
        assert other.get("/fas/", query_string=level2(clientmac="02:aa:bb:cc:dd:71", clientip="10.77.0.71")).status_code == 200
        assert other.post("/connect", data={"csrf_token": other.token("/?form=1"), "email": "o@example.com"}).status_code == 422
    finally:
        database.close()


def test_an_ipv6_guest_cannot_mint_peers(tmp_path):
    """A guest may use any address of its /64: the throttle counts the /64."""
    app = make_app(tmp_path)
    try:
        gateway = app.extensions["footfall"].gateway
        statuses = [PortalClient(app.test_client(), ip=f"fd77::{i:x}").get("/fas/", query_string={"fas": "x"}).status_code
                    for i in range(1, 200)]
        assert statuses.count(400) == 20 and statuses.count(429) == 179
        assert list(gateway.throttle.items) == ["peer:fd77::/64"]
        assert PortalClient(app.test_client(), ip="fd77::1:1").get(
            "/fas/", query_string=level2(clientmac="02:aa:bb:cc:dd:72")).status_code == 429
    finally:
        database.close()


def test_level1_limits_key_on_the_tcp_peer(tmp_path):
    app = make_app(tmp_path, opennds_secure_level=1, rate_limit_count=3)
    try:
        rt = app.extensions["footfall"]
        guest = PortalClient(app.test_client(), ip=GUEST_IP)
        guest.get("/fas/", query_string={"fas": level1(clientmac=GUEST_MAC, clientip=GUEST_IP)})
        exhaust(guest, 3)
        keys_before = len(rt.limiter.bucket("forms"))
        for i in range(200):  # forged identities: each one's own counters would start at zero
            assert guest.get("/fas/", query_string={"fas": level1(clientmac=f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}",
                                                                  clientip=f"10.77.1.{i % 250}")}).status_code == 200
            token = guest.token("/?form=1")
            assert guest.post("/connect", data={"csrf_token": token, "email": "x@example.com"}).status_code == 429
        assert len(rt.limiter.bucket("forms")) == keys_before
    finally:
        database.close()
