"""Several batches of one store in flight (issue 18): each names the seq its predecessor ended with
("after"); the central applies it only once its store's high-water mark reached that seq, waiting
a little, else answering 409 with nothing applied. Real PostgreSQL, real HTTP where it matters."""
from __future__ import annotations

import gzip
import http.client
import itertools
import json
import threading
import time

import pytest

from central import ingest
from central.db import database
from central.ingest import sign
from tests.central.fixtures import event, post_batch
from tests.central.test_sync_e2e import central_server  # noqa: F401  (the fixture)


def visits(first_seq: int, n: int) -> list[dict]:
    """n visits of a device linked to no one (applied and counted, kept nowhere), seqs from first_seq."""
    return [{**event("visit.closed", device="3c:22:fb:00:09:09", start="2026-11-20 10:00:00",
                     end="2026-11-20 10:30:00", passerby=False), "seq": first_seq + i} for i in range(n)]


def body(events: list[dict], after=None, **extra) -> bytes:
    doc = {"events": events, **({"after": after} if after is not None else {}), **extra}
    return gzip.compress(json.dumps(doc).encode())


def mark(store_id: str) -> tuple[int, int]:
    with database.connection_context():
        return database.execute_sql("SELECT coalesce(seq_applied, 0), events_applied FROM store WHERE id = %s", (store_id,)).fetchone()


def test_a_batch_whose_predecessor_is_not_applied_is_refused_with_nothing_applied(central_app, stores, monkeypatch):
    monkeypatch.setattr(ingest, "AWAIT_SECONDS", 0.2)
    client, key = central_app.test_client(), stores["hcm-01"]
    first, second = visits(1, 5), visits(6, 5)
    answer = post_batch(client, "hcm-01", key, None, body=body(second, after=5))
    assert answer.status_code == 409 and "not applied yet" in answer.json["error"]
    assert mark("hcm-01") == (0, 0)  # not applied: its events would have hidden the first batch's
    assert post_batch(client, "hcm-01", key, None, body=body(first)).json["applied"] == 5
    again = post_batch(client, "hcm-01", key, None, body=body(second, after=5))
    assert again.status_code == 200 and (again.json["applied"], again.json["duplicates"]) == (5, 0)
    resent = post_batch(client, "hcm-01", key, None, body=body(second, after=5))  # its answer lost: duplicates
    assert (resent.json["applied"], resent.json["duplicates"]) == (0, 5)
    assert mark("hcm-01") == (10, 10)


@pytest.mark.parametrize("after, extra", [
    (True, {}), (0, {}), (-3, {}), ("5", {}), (5.0, {}), (2**63, {}),
    (6, {}),  # not below the batch's first seq
    (None, {"before": 5}),  # an unknown member
])
def test_a_bad_after_is_a_clear_400_with_nothing_applied(central_app, stores, after, extra):
    answer = post_batch(central_app.test_client(), "hcm-01", stores["hcm-01"], None, body=body(visits(6, 3), after, **extra))
    assert answer.status_code == 400 and answer.json["error"]
    assert mark("hcm-01") == (0, 0)


def test_trailing_text_after_the_after_member_is_refused(central_app, stores):
    raw = gzip.compress(b'{"events":[],"after":5,"after":6}')
    answer = post_batch(central_app.test_client(), "hcm-01", stores["hcm-01"], None, body=raw)
    assert answer.status_code == 400


def raw_post(port: int, store_id: str, key: bytes, payload: bytes) -> tuple[int, dict]:
    ts = int(time.time())
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/v1/ingest", body=payload, headers={
            "Content-Encoding": "gzip", "X-Footfall-Store": store_id, "X-Footfall-Timestamp": str(ts),
            "X-Footfall-Signature": sign(key, ts, payload)})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_a_batch_arriving_before_its_predecessor_waits_for_it(central_app, stores, central_server):
    """Over real HTTP (two server workers): the second batch arrives first and waits (its
    predecessor is not even sent yet); the first comes, is applied, then the second: nothing
    dropped as a duplicate, both answered 200."""
    key = stores["hcm-01"]
    answers = {}
    second = threading.Thread(target=lambda: answers.update(second=raw_post(central_server, "hcm-01", key,
                                                                             body(visits(101, 50), after=100))))
    second.start()
    time.sleep(0.4)
    answers["first"] = raw_post(central_server, "hcm-01", key, body(visits(1, 100)))
    second.join()
    assert answers["first"][0] == 200 and answers["first"][1]["applied"] == 100
    assert answers["second"][0] == 200 and (answers["second"][1]["applied"], answers["second"][1]["duplicates"]) == (50, 0)
    assert mark("hcm-01") == (150, 150)


@pytest.mark.parametrize("in_flight", [1, 3])
def test_an_appliance_with_batches_in_flight_delivers_everything_once(app, visitors, central_settings, central_server,
                                                                      in_flight):
    """The appliance's drain with up to `in_flight` batches travelling (small batches: many of
    them), over real HTTP: every event applied once, the rows as many as the appliance's."""
    from portal import sync
    from tests.central.test_sync_e2e import activity, central_counts, enroll_store, expected
    keys = enroll_store(central_settings, app)
    activity(visitors, 0, 30)
    target = sync.Target(f"http://127.0.0.1:{central_server}", keys.store_id, keys.sync_key, allow_http=True)
    result = sync.drain(target, visitors.vault, visitors.gateway, keys.store_id, batch=9, in_flight=in_flight)
    assert "error" not in result and result["duplicates"] == 0
    assert result["sent"] == result["applied"] == expected()["applied"] and result["batches"] >= 10
    assert sync.pending() == 0
    assert central_counts() == expected()


def test_a_central_that_refuses_after_gets_one_batch_at_a_time(app, visitors, central_settings, central_server):
    """A central store not yet upgraded answers 400 to a body with "after" (its parser knows
    {"events": [...]} only): the appliance sends the rest one batch at a time, without "after",
    and everything arrives once."""
    from portal import sync
    from tests.central.test_sync_e2e import FaultyProxy, activity, central_counts, enroll_store, expected

    class OlderCentral(FaultyProxy):
        refused = 0

        def forward(self, path, headers, body):
            if b'"after":' in gzip.decompress(body):
                OlderCentral.refused += 1
                return 400, {}, b'{"error": "body is not JSON of the form {\\"events\\": [...]}"}'
            return super().forward(path, headers, body)

    keys = enroll_store(central_settings, app)
    activity(visitors, 0, 20)
    proxy = OlderCentral(central_server)
    proxy.plan = itertools.cycle(["forward"])
    try:
        target = sync.Target(f"http://127.0.0.1:{proxy.port}", keys.store_id, keys.sync_key, allow_http=True)
        result = sync.drain(target, visitors.vault, visitors.gateway, keys.store_id, batch=9, in_flight=2)
    finally:
        proxy.close()
    assert "error" not in result and OlderCentral.refused >= 1
    assert sync.pending() == 0 and central_counts() == expected()
