"""Issue 12, item 2 (the panel's part): a flood of other keys never unblocks a blocked panel login.

Before, one shared table of 20,000 keys forgot its stalest key for each new one: about 10,000
forged visitor identities flushed it, a blocked panel login included.
"""
from __future__ import annotations

import dataclasses

import pytest

from portal import accounts
from portal.ratelimit import Bucket, RateLimiter
from tests.panel.conftest import PanelClient

FLOOD = 25_000
PASSWORD = "correct horse battery staple"


@pytest.fixture
def settings(settings):
    return dataclasses.replace(settings, panel_require_2fa=False, rate_limit_count=3)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_of_distinct_keys_never_unblocks_a_blocked_key():
    bucket = Bucket(limit=3, window=600, max_keys=20_000)
    assert all(bucket.allow("203.0.113.7") for _ in range(3))
    assert not bucket.allow("203.0.113.7")
    for i in range(FLOOD):
        bucket.allow(f"flood-{i}")
    assert not bucket.allow("203.0.113.7") and bucket.blocked("203.0.113.7")
    assert len(bucket) <= 20_000  # memory stays bounded all the same


def test_a_blocked_key_is_released_by_its_window_not_by_the_flood():
    clock = Clock()
    bucket = Bucket(limit=2, window=60, max_keys=100, clock=clock)
    bucket.allow("a"), bucket.allow("a")
    for i in range(1000):
        bucket.allow(f"k{i}")
    clock.now += 59
    assert not bucket.allow("a")
    clock.now += 2
    assert bucket.allow("a")


def test_a_table_full_of_blocked_keys_refuses_new_keys_until_one_expires():
    """Fail closed: with no room left but blocked keys, forgetting one would unblock it."""
    clock = Clock()
    bucket = Bucket(limit=1, window=60, max_keys=100, clock=clock)
    for i in range(100):
        assert bucket.allow(f"k{i}")
    assert not bucket.allow("newcomer") and bucket.refused_full == 1
    assert not bucket.allow("k0")
    clock.now += 61
    assert bucket.allow("newcomer")


def test_a_fail_open_bucket_full_of_blocked_keys_lets_the_oldest_go():
    """The visitor forms' policy: 100 blocked identities must not lock every newcomer out."""
    bucket = Bucket(limit=1, window=60, max_keys=100, clock=Clock(), fail_closed=False)
    for i in range(100):
        bucket.allow(f"k{i}")
    assert bucket.allow("newcomer") and bucket.evicted_blocked == 1
    assert bucket.allow("k0") and not bucket.allow("k99")


def test_the_panel_login_bucket_fails_closed(app):
    assert app.extensions["footfall"].limiter.bucket("panel-login").fail_closed


def test_buckets_are_separate_stores():
    limiter = RateLimiter(limit=3, window=600, max_keys=100)
    login = limiter.bucket("panel-login", limit=2, window=600)
    assert login is limiter.bucket("panel-login")
    login.allow("10.0.0.1"), login.allow("10.0.0.1")
    for i in range(1000):
        limiter.allow(f"mac:{i}", f"ip:{i}")
    assert login.blocked("10.0.0.1") and len(login) == 1


def test_the_apps_blocked_panel_login_survives_a_flood_of_forged_identities(app):
    accounts.create_manager("owner1", PASSWORD, "owner")
    client = PanelClient(app.test_client())
    codes = [client.login("owner1", "wrong password here").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    limiter = app.extensions["footfall"].limiter
    for i in range(FLOOD):  # as forged openNDS identities did through the visitor forms
        limiter.allow(f"mac:02:00:{i:08x}", f"ip:10.{i >> 16}.{(i >> 8) & 255}.{i & 255}")
    login_bucket = limiter.bucket("panel-login")
    for i in range(FLOOD):  # and as many other management addresses
        login_bucket.allow(f"127.1.{i >> 8}.{i & 255}")
    assert client.login("owner1").status_code == 429  # the right password, still throttled


@pytest.mark.parametrize("forged", [{"X-Forwarded-For": "127.9.9.9"}, {"X-Real-IP": "127.9.9.9"}, {"Forwarded": "for=127.9.9.9"}])
def test_the_throttle_key_is_the_peer_address_not_a_header(app, forged):
    accounts.create_manager("owner1", PASSWORD, "owner")
    client = PanelClient(app.test_client())
    for _ in range(3):
        client.login("owner1", "wrong password here")
    response = client.post("/panel/login", data={"csrf_token": client.token(), "username": "someone-else",
                                                 "password": PASSWORD}, headers=forged)
    # Without trusted_proxy, a forwarded request is not from the management network at all
    # (tests/security/test_review_untrusted_front.py); the peer itself stays throttled.
    assert response.status_code == 404
    response = client.post("/panel/login", data={"csrf_token": client.token(), "username": "someone-else",
                                                 "password": PASSWORD})
    assert response.status_code == 429
    other_peer = PanelClient(app.test_client(), ip="127.0.0.2")
    assert other_peer.login("owner1", "wrong password here").status_code == 401  # the limit is per peer
