"""Signed batches applied exactly once; bad batches refused whole with a clear error."""
import gzip
import hashlib
import hmac
import json
import time

import pytest

from central.db import database
from tests.central.fixtures import event, post_batch

IDX = {k: hashlib.sha256(k.encode()).hexdigest() for k in ("lan@example.com", "+84912345678", "minh@example.com")}


def counts():
    with database.connection_context():
        return {t: database.execute_sql(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("person", "store_lead", "consent_event", "device", "visit", "applied_event", "segment_member")}


def lead(uid, email="lan@example.com", phone=None, verified=True, **kw):
    """A store's lead as the appliance sends it: contacts proved by a code (`verified`), or a claim."""
    return event("lead.upserted", lead=uid, email=email, phone=phone, name=kw.get("name"), language="vi",
                 email_index=IDX[email] if email else None, phone_index=IDX[phone] if phone else None,
                 email_verified=verified and email is not None, phone_verified=verified and phone is not None,
                 chain_sharing=kw.get("chain_sharing", True))


def store_events():
    return [lead("L1", phone="+84912345678", name="Lan"),
            event("consent.recorded", lead="L1", purpose="wifi_terms", granted=True, policy_sha256="a" * 64, method="portal_form"),
            event("consent.recorded", lead="L1", purpose="marketing_email", granted=True, policy_sha256="b" * 64),
            event("device.linked", device="3c:22:fb:00:00:01", lead="L1"),
            event("visit.closed", device="3c:22:fb:00:00:01", start="2026-11-20 09:00:00", end="2026-11-20 09:40:00", passerby=False),
            event("visit.closed", device="da:00:00:00:00:09", start="2026-11-20 09:05:00", end="2026-11-20 09:06:00", passerby=True),
            event("segment.members", segment="loyal", members=["L1"])]


def test_a_batch_is_applied_and_a_replay_applies_nothing(central_app, stores):
    client = central_app.test_client()
    batch = store_events()
    first = post_batch(client, "hcm-01", stores["hcm-01"], batch)
    assert first.status_code == 200, first.json
    # The passer-by's visit (a device linked to no one) is ignored and counted: no trace of it here.
    assert first.json == {"applied": 7, "duplicates": 0, "commands": [], "ignored_anonymous": 1}
    after_first = counts()
    assert after_first == {"person": 1, "store_lead": 1, "consent_event": 2, "device": 1, "visit": 1,
                           "applied_event": 7, "segment_member": 1}
    again = post_batch(client, "hcm-01", stores["hcm-01"], batch)
    assert again.json["applied"] == 0 and again.json["duplicates"] == 7
    assert counts() == after_first


def test_the_same_person_in_two_stores_is_one_person(central_app, stores):
    client = central_app.test_client()
    post_batch(client, "hcm-01", stores["hcm-01"], [lead("A1")])
    post_batch(client, "hn-02", stores["hn-02"], [lead("B7", phone="+84912345678")])
    c = counts()
    assert (c["person"], c["store_lead"]) == (1, 2)
    vault = central_app.extensions["central"]["vault"]
    with database.connection_context():
        email_enc, = database.execute_sql("SELECT email_enc FROM person").fetchone()
    assert vault.decrypt(bytes(email_enc), "person.email") == "lan@example.com"


@pytest.mark.parametrize("tamper", ["signature", "stale", "future", "store", "body"])
def test_forged_or_stale_batches_are_refused_and_apply_nothing(central_app, stores, tamper):
    client = central_app.test_client()
    body = gzip.compress(json.dumps({"events": store_events()}).encode())
    ts = int(time.time())
    if tamper == "signature":
        response = post_batch(client, "hcm-01", stores["hcm-01"], None, body=body,
                              headers={"X-Footfall-Signature": hmac.new(b"x" * 32, body, hashlib.sha256).hexdigest()})
    elif tamper == "stale":
        response = post_batch(client, "hcm-01", stores["hcm-01"], None, body=body, timestamp=ts - 3600)
    elif tamper == "future":
        response = post_batch(client, "hcm-01", stores["hcm-01"], None, body=body, timestamp=ts + 3600)
    elif tamper == "store":
        response = post_batch(client, "nobody", stores["hcm-01"], None, body=body)
    else:
        from central.ingest import sign
        response = client.post("/v1/ingest", data=body + b"x", headers={
            "Content-Encoding": "gzip", "X-Footfall-Store": "hcm-01", "X-Footfall-Timestamp": str(ts),
            "X-Footfall-Signature": sign(stores["hcm-01"], ts, body)})
    assert response.status_code == 401 and "error" in response.json
    assert counts()["applied_event"] == 0


@pytest.mark.parametrize("body,status,message", [
    (b"not gzip at all", 400, "gzip"),
    (gzip.compress(b"{not json"), 400, "JSON"),
    (gzip.compress(b'["a list"]'), 400, "events"),
    (gzip.compress(json.dumps({"events": [{"uid": "x", "topic": "lead.upserted", "at": "2026-11-20T10:00:00",
                                           "data": {"lead": "L1", "language": "klingon"}}]}).encode()), 400, "event 0: invalid language"),
    (gzip.compress(json.dumps({"events": [{"uid": "x", "topic": "visit.closed", "at": "2026-11-20T10:00:00",
                                           "data": {"device": "'; DROP TABLE visit;--", "start": "x", "end": "y"}}]}).encode()), 400, "device"),
    (gzip.compress(json.dumps({"events": [{"uid": "bad uid!", "topic": "x", "at": "", "data": {}}]}).encode()), 400, "uid"),
    (gzip.compress(json.dumps({"events": [{"uid": "x", "topic": "lead.upserted", "at": "2026-11-20T10:00:00",
                                           "data": {"lead": "L1", "language": "vi"}}] * 20001}).encode()), 413, "at most"),
    (gzip.compress(b" " * (65 * 1024 * 1024)), 413, "64 MiB"),
], ids=["not-gzip", "not-json", "not-events", "bad-language", "bad-device", "bad-uid", "too-many", "too-big"])  # gzip's clock is in a body
def test_malformed_batches_are_refused_whole(central_app, stores, body, status, message):
    response = post_batch(central_app.test_client(), "hcm-01", stores["hcm-01"], None, body=body)
    assert response.status_code == status and message in response.json["error"]
    assert counts()["applied_event"] == 0


def test_a_bad_event_refuses_the_batch_it_is_in(central_app, stores):
    batch = store_events() + [event("consent.recorded", lead="L1", purpose="sell_my_data", granted=True)]
    response = post_batch(central_app.test_client(), "hcm-01", stores["hcm-01"], batch)
    assert response.status_code == 400 and "event 7" in response.json["error"]
    assert counts()["person"] == 0


def test_oversized_and_unencoded_requests(central_app, stores):
    client = central_app.test_client()
    big = client.post("/v1/ingest", data=b"x" * (9 * 1024 * 1024), headers={"Content-Encoding": "gzip"})
    assert big.status_code == 413 and "error" in big.json
    plain = client.post("/v1/ingest", data=b"{}", headers={"X-Footfall-Store": "hcm-01"})
    assert plain.status_code == 415


def test_erasure_at_one_store_reaches_the_others(central_app, stores):
    client = central_app.test_client()
    post_batch(client, "hcm-01", stores["hcm-01"], store_events())
    post_batch(client, "hn-02", stores["hn-02"], [lead("B7"), event("device.linked", device="00:1a:11:00:00:07", lead="B7")])
    erased = post_batch(client, "hcm-01", stores["hcm-01"], [event("lead.erased", lead="L1", verified=True)])
    assert erased.json["commands"] == []  # the store it came from has erased already
    with database.connection_context():
        row = database.execute_sql("SELECT email_enc, erased_at FROM person").fetchone()
        assert row[0] is None and row[1] is not None
        assert database.execute_sql("SELECT count(*) FROM device WHERE person_id IS NOT NULL").fetchone()[0] == 0
    other = post_batch(client, "hn-02", stores["hn-02"], [])
    assert other.json["commands"] == [{"erase_lead": "B7"}]
    post_batch(client, "hn-02", stores["hn-02"], [event("erase.ack", lead="B7")])
    assert post_batch(client, "hn-02", stores["hn-02"], []).json["commands"] == []


def numbered(events, start):
    """The events as an upgraded appliance sends them: each with its outbox seq, growing."""
    return [{**e, "seq": start + i} for i, e in enumerate(events)]


def test_a_stores_high_water_mark_applies_each_seq_once(central_app, stores):
    """Events with a seq are applied when above the store's mark, without a row per event id."""
    client = central_app.test_client()
    batch = numbered(store_events(), 1_700_000_000_000_000)
    first = post_batch(client, "hcm-01", stores["hcm-01"], batch)
    assert first.status_code == 200 and first.json["applied"] == 7, first.json
    after_first = counts()
    assert after_first["applied_event"] == 0 and after_first["visit"] == 1
    # The retry of a lost answer, and a batch overlapping it (the first events again, then one more).
    assert post_batch(client, "hcm-01", stores["hcm-01"], batch).json["duplicates"] == 7
    more = batch[-2:] + numbered([event("visit.closed", device="3c:22:fb:00:00:01", start="2026-11-21 09:00:00",
                                        end="2026-11-21 09:30:00", passerby=False)], batch[-1]["seq"] + 5)
    answer = post_batch(client, "hcm-01", stores["hcm-01"], more).json
    assert (answer["applied"], answer["duplicates"]) == (1, 2)
    assert counts() == {**after_first, "visit": 2}
    with database.connection_context():
        marks = dict(database.execute_sql("SELECT id, seq_applied FROM store").fetchall())
    assert marks == {"hcm-01": more[-1]["seq"], "hn-02": None}  # one mark per store: the other's is untouched
    # The other store's seqs are its own: the same numbers are new there.
    assert post_batch(client, "hn-02", stores["hn-02"], batch).json["applied"] == 7


def test_events_of_a_store_not_yet_upgraded_come_first_and_are_claimed_by_uid(central_app, stores):
    client = central_app.test_client()
    old, new = store_events()[:4], numbered(store_events()[4:], 1_700_000_000_000_000)
    answer = post_batch(client, "hcm-01", stores["hcm-01"], old + new).json
    assert answer["applied"] == 7 and counts()["applied_event"] == 4
    assert post_batch(client, "hcm-01", stores["hcm-01"], old + new).json["duplicates"] == 7


@pytest.mark.parametrize("seq", [True, 0, -1, 1.5, "12", 2**63, [1], None])
def test_a_bad_seq_refuses_the_batch_whole(central_app, stores, seq):
    client = central_app.test_client()
    before = counts()
    bad = {**event("visit.closed", device="3c:22:fb:00:00:01", start="2026-11-20 09:00:00",
                   end="2026-11-20 09:40:00", passerby=False), "seq": seq}
    events = numbered([lead("L1")], 5) + [bad]
    response = post_batch(client, "hcm-01", stores["hcm-01"], events)
    assert response.status_code == 400
    assert response.json["error"].startswith("event 1: ") and "seq" in response.json["error"]
    assert counts() == before


def test_seqs_must_grow_within_a_batch(central_app, stores):
    client = central_app.test_client()
    before = counts()
    events = numbered([lead("L1"), event("consent.recorded", lead="L1", purpose="wifi_terms", granted=True)], 9)
    response = post_batch(client, "hcm-01", stores["hcm-01"], events[::-1])
    assert response.status_code == 400 and "seq must grow" in response.json["error"]
    assert counts() == before
    with database.connection_context():
        assert database.execute_sql("SELECT seq_applied FROM store WHERE id = 'hcm-01'").fetchone()[0] is None
