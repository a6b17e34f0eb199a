"""Reading a store's batch, bounded at every step: inflate, parse, validate.

A batch is gzip(JSON {"events": [...]}), or {"events": [...], "after": seq} from a store with
batches in flight (the seq its previous batch ended with: central/ingest.py). Its signature is checked before any of this, but a
store's key can leak, so a signed batch is still read as hostile: the gzip stream is inflated in
chunks and refused (413) as soon as it passes MAX_INFLATED bytes, without inflating the rest;
the JSON values it could build are counted before parsing (a 64 MiB text of "[[],[],...]" would
otherwise become gigabytes of objects); the events are parsed one by one and refused (413) as
soon as there are more than MAX_EVENTS, each validated as it is read (portal/core/events.py).
"""
from __future__ import annotations

import json
import re
import time
import zlib
from typing import NamedTuple

from portal.core.events import SEQ_MAX, Event, EventError, validate

MAX_EVENTS = 20_000
# A seq is microseconds on the store's floored clock (portal.clock.seq_now): one further ahead of
# the central's clock than this was numbered by a clock gone wrong, a bug or a forger. Taken, it
# would move the store's high-water mark past every event the store will honestly send (each then
# dropped as a duplicate); refused, the store's push fails loudly (its health view says so).
SEQ_AHEAD_SECONDS = 86_400
MAX_INFLATED = 64 * 1024 * 1024
# Every JSON value but the first in a container follows a "," and every container opens with
# "[" or "{": their count bounds the objects a text can build. The largest legitimate event
# (a segment of 1,000,000 members, events.MAX_MEMBERS) needs 1,000,000.
MAX_VALUES = 2_000_000
CHUNK = 1 << 20
_WS = re.compile(r"[ \t\n\r]*")


class Refused(Exception):
    """The batch is refused; status and a message the store can act on."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def inflate(body: bytes, limit: int = MAX_INFLATED) -> bytes:
    """The gzip stream's content; 413 as soon as it passes `limit` bytes (the rest stays compressed)."""
    stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing only
    out = bytearray()
    pending = body
    try:
        while True:
            chunk = stream.decompress(pending, CHUNK)
            out += chunk
            if len(out) > limit:
                raise Refused(413, f"batch inflates beyond {limit // (1024 * 1024)} MiB")
            pending = stream.unconsumed_tail
            if stream.eof or (not pending and not chunk):
                break
    except zlib.error:
        raise Refused(400, "body is not gzip") from None
    if not stream.eof:
        raise Refused(400, "body is not gzip (truncated)")
    if stream.unused_data:
        raise Refused(400, "body is not gzip (data after the stream)")
    return bytes(out)


def _skip(text: str, pos: int, expected: str = "") -> int:
    pos = _WS.match(text, pos).end()
    if expected:
        if not text.startswith(expected, pos):
            raise ValueError(expected)
        pos = _WS.match(text, pos + len(expected)).end()
    return pos


def _raw_events(text: str, tail: dict):
    """Yield the elements of {"events": [...]} one at a time (never the whole list at once); an
    "after" member following the list (a pipelining store's, central/ingest.py) goes into `tail`."""
    decoder = json.JSONDecoder()
    pos = _skip(text, 0, "{")
    key, pos = decoder.raw_decode(text, pos)
    if key != "events":
        raise ValueError("events")
    pos = _skip(text, _skip(text, pos, ":"), "[")
    if text.startswith("]", pos):
        pos += 1
    else:
        decode, space = decoder.raw_decode, _WS.match
        while True:
            value, pos = decode(text, pos)
            yield value
            if text.startswith(",", pos):  # the stores' compact JSON: no space to skip
                pos += 1
                if text[pos:pos + 1] in " \t\n\r":
                    pos = space(text, pos).end()
                continue
            pos = space(text, pos).end()
            if text.startswith(",", pos):
                pos = space(text, pos + 1).end()
            elif text.startswith("]", pos):
                pos += 1
                break
            else:
                raise ValueError("]")
    pos = _skip(text, pos)
    if text.startswith(",", pos):
        key, pos = decoder.raw_decode(text, _skip(text, pos + 1))
        if key != "after":
            raise ValueError("after")
        tail["after"], pos = decoder.raw_decode(text, _skip(text, pos, ":"))
    if _skip(text, pos, "}") != len(text):
        raise ValueError("end")


class Batch(NamedTuple):
    events: list[Event]
    after: int | None  # the seq the store's previous batch in flight ended with (None: apply at once)


def parse_events(raw: bytes) -> list[Event]:
    """Validated events; 400 for the first bad one, 413 as soon as there are too many."""
    return parse_batch(raw).events


def parse_batch(raw: bytes) -> Batch:
    """The validated events and the batch's "after"; 400 for the first bad value, 413 as soon as
    there are too many events."""
    values = raw.count(b",") + raw.count(b"[") + raw.count(b"{")
    if values > MAX_VALUES:
        raise Refused(413, f"batch holds more than {MAX_VALUES} JSON values; send smaller batches")
    ceiling = (time.time_ns() // 1000) + SEQ_AHEAD_SECONDS * 1_000_000
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "body is not UTF-8 JSON") from None
    events: list[Event] = []
    tail: dict = {}
    try:
        for item in _raw_events(text, tail):
            if len(events) == MAX_EVENTS:
                raise Refused(413, f"at most {MAX_EVENTS} events per batch")
            try:
                event = validate(item)
            except EventError as exc:
                raise Refused(400, f"event {len(events)}: invalid {exc.args[0] if exc.args else 'value'}") from None
            if event.seq is not None and event.seq > ceiling:
                raise Refused(400, f"event {len(events)}: seq is ahead of the central store's clock by more than a day")
            last = events[-1].seq if events else None
            # The store's high-water mark (central/ingest.py) holds only for a batch in outbox order.
            if last is not None and (event.seq is None or event.seq <= last):
                raise Refused(400, f"event {len(events)}: seq must grow within a batch (events in outbox order)")
            events.append(event)
    except ValueError:  # json.JSONDecodeError is one, and so are _raw_events' own
        raise Refused(400, 'body is not JSON of the form {"events": [...]}') from None
    except RecursionError:
        raise Refused(400, "body nests too deeply") from None
    after = tail.get("after")
    if after is not None:
        if type(after) is not int or not 0 < after <= SEQ_MAX:
            raise Refused(400, "after must be the seq of the store's previous batch (a positive integer)")
        first = next((e.seq for e in events if e.seq is not None), None)  # the smallest: seqs grow
        if (first is not None and first <= after) or after > ceiling:
            raise Refused(400, "after must be below the seqs of the batch's events")
    return Batch(events, after)


def read_batch(body: bytes) -> Batch:
    return parse_batch(inflate(body))

