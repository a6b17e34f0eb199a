"""The central store with several stores and API clients at once (issue 9): stores push signed
batches in parallel (each batch twice, as a retry after a lost answer would), people shop at more
than one store, the marketing team reads meanwhile; every event applies exactly once, people
merge by blind index, nobody sees a server error."""
from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import threading
import time

from central import add_store, add_token, create_app
from central.db import database
from central.ingest import sign
from tests.central.fixtures import event
from tests.central.test_sync_e2e import central_server  # noqa: F401  (the fixture)

STORES = 4
BATCHES = 8
PEOPLE_PER_BATCH = 5
SHARED = 6  # these people shop at every store


def index(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def batch(store: int, n: int) -> list[dict]:
    events = []
    for p in range(PEOPLE_PER_BATCH):
        email = f"shared{p}@example.com" if p < 2 and n < SHARED // 2 else f"s{store}-b{n}-p{p}@example.com"
        uid = f"{store}-{n}-{p}"
        mac = f"3c:22:fb:{store:02x}:{n:02x}:{p:02x}"
        events += [event("lead.upserted", lead=uid, email=email, phone=None, name=None, language="vi",
                         email_index=index(email), phone_index=None, email_verified=True, phone_verified=False,
                         chain_sharing=True),
                   event("consent.recorded", lead=uid, purpose="wifi_terms", granted=True, policy_sha256="a" * 64,
                         method="portal_form"),
                   event("device.linked", device=mac, lead=uid),
                   event("visit.closed", device=mac, start=f"2026-11-20 {9 + p:02d}:00:00", end=f"2026-11-20 {9 + p:02d}:40:00",
                         passerby=False)]
    return events


def post(port: int, store_id: str, key: bytes, events: list[dict]) -> int:
    body = gzip.compress(json.dumps({"events": events}).encode())
    ts = int(time.time())
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/v1/ingest", body=body, headers={
            "Content-Encoding": "gzip", "X-Footfall-Store": store_id, "X-Footfall-Timestamp": str(ts),
            "X-Footfall-Signature": sign(key, ts, body)})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def get(port: int, path: str, token: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_stores_and_api_clients_at_once(central_settings, central_server):  # noqa: F811
    app = create_app(central_settings)
    with database.connection_context():
        vault = app.extensions["central"]["vault"]
        keys = {f"s{i}": add_store(f"s{i}", f"Store {i}", vault) for i in range(STORES)}
        token = add_token("crm", ["people:read", "stores:read"])
    planned = {sid: [batch(i, n) for n in range(BATCHES)] for i, sid in enumerate(keys)}
    statuses: list[int] = []
    reads: list[int] = []
    done = threading.Event()

    def store(sid):
        for events in planned[sid]:
            statuses.append(post(central_server, sid, keys[sid], events))
            statuses.append(post(central_server, sid, keys[sid], events))  # the retry of a lost answer

    def reader():
        while not done.is_set():
            reads.append(get(central_server, "/v1/people?limit=50", token))
            reads.append(get(central_server, "/v1/stores", token))

    pushers = [threading.Thread(target=store, args=(sid,)) for sid in keys]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in (*pushers, *readers):
        t.start()
    for t in pushers:
        t.join(180)
    done.set()
    for t in readers:
        t.join(60)

    assert statuses == [200] * (2 * STORES * BATCHES)
    assert reads and set(reads) == {200}
    all_events = [e for batches in planned.values() for b in batches for e in b]
    emails = {e["data"]["email_index"] for e in all_events if e["topic"] == "lead.upserted"}
    with database.connection_context():
        one = lambda sql: database.execute_sql(sql).fetchone()[0]  # noqa: E731
        assert one("SELECT count(*) FROM applied_event") == len(all_events)
        assert one("SELECT count(*) FROM person") == len(emails)  # the shared shoppers merged once
        assert one("SELECT count(*) FROM consent_event") == sum(e["topic"] == "consent.recorded" for e in all_events)
        assert one("SELECT count(*) FROM visit") == sum(e["topic"] == "visit.closed" for e in all_events)
        shared_stores = database.execute_sql(
            "SELECT count(DISTINCT store_id) FROM store_lead WHERE person_id IN "
            "(SELECT id FROM person WHERE email_index = %s)", (index("shared0@example.com"),)).fetchone()[0]
        assert shared_stores == STORES
