"""Reading a store's batch, bounded at every step: inflate, parse, validate.

A batch is gzip(JSON {"events": [...]}). Its signature is checked before any of this, but a
store's key can leak, so a signed batch is still read as hostile: the gzip stream is inflated in
chunks and refused (413) as soon as it passes MAX_INFLATED bytes, without inflating the rest;
the JSON values it could build are counted before parsing (a 64 MiB text of "[[],[],...]" would
otherwise become gigabytes of objects); the events are parsed one by one and refused (413) as
soon as there are more than MAX_EVENTS, each validated as it is read.
"""
from __future__ import annotations

import datetime
import json
import re
import zlib
from dataclasses import dataclass

TOPICS = ("lead.upserted", "lead.merged", "consent.recorded", "device.linked", "visit.closed", "segment.members",
          "lead.erased", "devices.erased", "erase.ack")
MAX_EVENTS = 20_000
MAX_INFLATED = 64 * 1024 * 1024
# Every JSON value but the first in a container follows a "," and every container opens with
# "[" or "{": their count bounds the objects a text can build. The largest legitimate event
# (a segment of 1,000,000 members) needs 1,000,000.
MAX_VALUES = 2_000_000
MAX_MEMBERS = 1_000_000
CHUNK = 1 << 20
UID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_WS = re.compile(r"[ \t\n\r]*")
_PURPOSES = ("wifi_terms", "marketing_email", "marketing_sms", "ad_audiences")


class Refused(Exception):
    """The batch is refused; status and a message the store can act on."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Event:
    uid: str
    topic: str
    at: datetime.datetime
    data: dict


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


def _raw_events(text: str):
    """Yield the elements of {"events": [...]} one at a time (never the whole list at once)."""
    decoder = json.JSONDecoder()
    pos = _skip(text, 0, "{")
    key, pos = decoder.raw_decode(text, pos)
    if key != "events":
        raise ValueError("events")
    pos = _skip(text, _skip(text, pos, ":"), "[")
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            value, pos = decoder.raw_decode(text, pos)
            yield value
            pos = _skip(text, pos)
            if text.startswith(",", pos):
                pos = _skip(text, pos + 1)
            elif text.startswith("]", pos):
                pos += 1
                break
            else:
                raise ValueError("]")
    if _skip(text, pos, "}") != len(text):
        raise ValueError("end")


def parse_events(raw: bytes) -> list[Event]:
    """Validated events; 400 for the first bad one, 413 as soon as there are too many."""
    values = raw.count(b",") + raw.count(b"[") + raw.count(b"{")
    if values > MAX_VALUES:
        raise Refused(413, f"batch holds more than {MAX_VALUES} JSON values; send smaller batches")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "body is not UTF-8 JSON") from None
    events: list[Event] = []
    try:
        for item in _raw_events(text):
            if len(events) == MAX_EVENTS:
                raise Refused(413, f"at most {MAX_EVENTS} events per batch")
            try:
                events.append(_event(item))
            except ValueError as exc:
                raise Refused(400, f"event {len(events)}: invalid {exc.args[0] if exc.args else 'value'}") from None
    except ValueError:  # json.JSONDecodeError is one, and so are _raw_events' own
        raise Refused(400, 'body is not JSON of the form {"events": [...]}') from None
    except RecursionError:
        raise Refused(400, "body nests too deeply") from None
    return events


def read_batch(body: bytes) -> list[Event]:
    return parse_events(inflate(body))


def _str(data, key, limit, pattern=None, optional=False):
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= limit or (pattern and not pattern.match(value)):
        raise ValueError(key)
    return value


def _flag(data, key):
    """An optional boolean: absent (an older store) is False; anything but true or false is refused."""
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(key)
    return value


def event_time(value) -> datetime.datetime:
    """An ISO 8601 time as naive UTC; ValueError for anything else, overflow included
    (0001-01-01T00:00:00+14:00 is before year 1 in UTC)."""
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("time")
    try:
        parsed = datetime.datetime.fromisoformat(value)
        return parsed.astimezone(datetime.timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed
    except (ValueError, OverflowError):
        raise ValueError("time") from None


def _event(raw) -> Event:
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), dict):
        raise ValueError("event")
    uid = _str(raw, "uid", 64, UID)
    topic = raw.get("topic")
    if topic not in TOPICS:
        raise ValueError("topic")
    data = raw["data"]
    _check(topic, data)
    return Event(uid, topic, event_time(raw.get("at")), data)


def _check(topic: str, d: dict) -> None:
    if topic in ("lead.upserted", "lead.merged", "consent.recorded", "lead.erased", "erase.ack", "device.linked"):
        _str(d, "lead", 64, UID)
    if topic == "lead.upserted" and not d.get("gone"):
        _str(d, "email", 254, optional=True)
        _str(d, "phone", 32, optional=True)
        _str(d, "name", 80, optional=True)
        _str(d, "email_index", 64, _HEX64, optional=True)
        _str(d, "phone_index", 64, _HEX64, optional=True)
        _flag(d, "email_verified"), _flag(d, "phone_verified")  # only a contact proved by a code merges people
        if d.get("language") not in ("vi", "en"):
            raise ValueError("language")
    elif topic == "lead.merged":  # the store folded a claim record into the proven one
        if _str(d, "into", 64, UID) == d["lead"]:
            raise ValueError("into")
    elif topic == "lead.erased":
        _flag(d, "verified")  # chain-wide only when true
    elif topic == "consent.recorded":
        if d.get("purpose") not in _PURPOSES or not isinstance(d.get("granted"), bool):
            raise ValueError("purpose")
        _str(d, "policy_sha256", 64, _HEX64, optional=True)
        _str(d, "method", 32, optional=True)
    elif topic in ("device.linked", "visit.closed"):
        _str(d, "device", 17, _MAC)
        if topic == "visit.closed":
            event_time(d.get("start")), event_time(d.get("end"))
            if not isinstance(d.get("passerby"), bool):
                raise ValueError("passerby")
    elif topic == "segment.members":
        _str(d, "segment", 64, UID)
        members = d.get("members")
        if not isinstance(members, list) or len(members) > MAX_MEMBERS:
            raise ValueError("members")
        if not all(isinstance(m, str) and UID.match(m) for m in members):
            raise ValueError("members")
    elif topic == "devices.erased":
        macs = d.get("devices")
        if not isinstance(macs, list) or not all(isinstance(m, str) and _MAC.match(m) for m in macs):
            raise ValueError("devices")
