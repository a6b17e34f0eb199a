"""A store whose key leaked sends batches built to exhaust the central's memory: refused early
(413), with the memory they take bounded, and nothing applied (issue 12, item 6)."""
from __future__ import annotations

import json
import tracemalloc
import zlib

import pytest

from central import batch
from central.db import database
from portal.core import events as wire_events
from tests.central.fixtures import post_batch

MiB = 1024 * 1024


def gzip_stream(*parts: tuple[bytes, int]) -> bytes:
    """gzip of each (chunk, times) in turn, compressed as it goes (the plain text is never held)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = []
    for chunk, times in parts:
        out.extend(packer.compress(chunk) for _ in range(times))
    out.append(packer.flush())
    return b"".join(out)


def applied() -> int:
    with database.connection_context():
        return database.execute_sql("SELECT count(*) FROM applied_event").fetchone()[0]


def peak_while(call) -> tuple[object, int]:
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_gzip_bomb_stops_inflating_at_the_bound(central_app, stores):
    body = gzip_stream((b"\0" * MiB, 256))  # 256 MiB inflated (4x the bound), 255 KiB on the wire
    assert len(body) < MiB
    response, peak = peak_while(lambda: post_batch(central_app.test_client(), "hcm-01", stores["hcm-01"], None, body=body))
    assert response.status_code == 413 and response.json["error"] == "batch inflates beyond 64 MiB"
    assert peak < 2 * batch.MAX_INFLATED  # the bound and a chunk, never the 256 MiB
    assert applied() == 0


def test_json_that_would_build_gigabytes_of_objects_is_refused_before_parsing(central_app, stores):
    # 20 million empty lists in 60 MiB: json.loads would build about 1.2 GB of objects.
    head = json.dumps({"uid": "u", "topic": "erase.ack", "at": "2026-11-20T10:00:00", "data": {"lead": "L"}})
    body = gzip_stream((b'{"events":[' + head[:-1].encode() + b',"junk":[', 1), (b"[]," * (MiB // 3), 60), (b"[]]}]}", 1))
    response, peak = peak_while(lambda: post_batch(central_app.test_client(), "hcm-01", stores["hcm-01"], None, body=body))
    assert response.status_code == 413 and "JSON values" in response.json["error"]
    assert peak < 2 * batch.MAX_INFLATED
    assert applied() == 0


def test_events_are_counted_as_they_are_parsed(central_app, stores):
    """One event more than the limit, then bytes that are not JSON: the count stops the parse
    (413) before the broken tail is reached (which would be a 400)."""
    one = json.dumps({"uid": "u0", "topic": "erase.ack", "at": "2026-11-20T10:00:00", "data": {"lead": "L"}}).encode()
    body = gzip_stream((b'{"events":[' + one, 1), (b"," + one, batch.MAX_EVENTS), (b",{not json at all", 1))
    response = post_batch(central_app.test_client(), "hcm-01", stores["hcm-01"], None, body=body)
    assert response.status_code == 413 and response.json["error"] == f"at most {batch.MAX_EVENTS} events per batch"
    assert applied() == 0


def test_the_limits_leave_real_batches_alone():
    """The largest legitimate event (a segment of a million members) fits the value budget."""
    members = [f"lead{i:07d}" for i in range(wire_events.MAX_MEMBERS)]
    raw = json.dumps({"events": [{"uid": "s", "topic": "segment.members", "at": "2026-11-20T10:00:00",
                                  "data": {"segment": "loyal", "members": members}}]}).encode()
    assert len(raw) < batch.MAX_INFLATED
    events = batch.parse_events(raw)
    assert len(events[0].data["members"]) == wire_events.MAX_MEMBERS


@pytest.mark.parametrize("body,message", [
    (gzip_stream((b'{"events":[]}', 1))[:-4], "body is not gzip (truncated)"),
    (gzip_stream((b'{"events":[]}', 1)) + b"\x1f\x8b more", "body is not gzip (data after the stream)"),
    (gzip_stream((b'{"events":[]}, "more": 1}', 1)), 'body is not JSON of the form {"events": [...]}'),
    (gzip_stream((b'{"events":' + b"[" * 100_000 + b"]" * 100_000 + b"}", 1)), "body nests too deeply"),
    (gzip_stream((b'{"events":[]}\xff', 1)), "body is not UTF-8 JSON"),
])
def test_broken_framing_is_a_clear_400(central_app, stores, body, message):
    response = post_batch(central_app.test_client(), "hcm-01", stores["hcm-01"], None, body=body)
    assert response.status_code == 400 and response.json["error"] == message
