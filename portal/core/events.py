"""The events a store sends the central store: their kinds (topics) and their validation.

An event is {"uid", "topic", "at", "data", "seq"} ("seq", the store's outbox sequence, is absent
from events written before an appliance knew it); the appliance writes it to its outbox in the same
transaction as the change it describes and portal/sync.py sends it in a signed batch
(portal/core/wire.py); the central store reads the batch (central/batch.py) and validates each
event here before applying it (central/ingest.py). `validate` takes a decoded JSON value and
returns a frozen Event or raises EventError naming the first bad field.
"""
from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from portal.core.macs import MAC
from portal.core.purposes import LANGUAGES, PURPOSES
from portal.core.times import event_time

TOPICS = ("lead.upserted", "consent.recorded", "device.linked", "visit.closed", "segment.members",
          "lead.erased", "lead.merged", "devices.erased", "erase.ack", "voucher.redeemed", "lead.restricted")
MAX_MEMBERS = 1_000_000  # members of one segment.members event
UID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")  # \Z: `$` would let a final newline through
_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")
_CODE = re.compile(r"^[A-Z0-9-]{1,20}\Z")
_CURRENCY = re.compile(r"^[A-Z]{3}\Z")


class EventError(ValueError):
    """An event we cannot use; args[0] names the field."""


@dataclass(frozen=True)
class Event:
    uid: str
    topic: str
    at: datetime.datetime
    data: dict
    seq: int | None = None  # the store's outbox sequence; None from a store not yet upgraded


SEQ_MAX = 2**63 - 1  # a PostgreSQL bigint


def validate(raw) -> Event:
    """The event `raw` (a decoded JSON value) describes; EventError for the first bad field."""
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), dict):
        raise EventError("event")
    if raw.get("topic") == "visit.closed":
        return _visit(raw)
    uid = _str(raw, "uid", 64, UID)
    topic = raw.get("topic")
    if topic not in TOPICS:
        raise EventError("topic")
    data = raw["data"]
    _check(topic, data)
    seq = raw.get("seq")
    # bool is an int in Python: true is not a seq. Absent is an older store (claimed by uid).
    if seq is not None and (type(seq) is not int or not 0 < seq <= SEQ_MAX):
        raise EventError("seq")
    return Event(uid, topic, _time(raw.get("at")), data, seq)


def _visit(raw: dict) -> Event:
    """validate() for visit.closed, most of what stores send: the same checks in the same order,
    written out (a third of the time of the general path)."""
    uid = raw.get("uid")
    if type(uid) is not str or not UID.match(uid):  # UID bounds the length to 1..64
        raise EventError("uid")
    d = raw["data"]
    device = d.get("device")
    if type(device) is not str or not MAC.match(device):  # MAC: 17 characters
        raise EventError("device")
    try:
        event_time(d.get("start")), event_time(d.get("end"))
        at = event_time(raw.get("at"))
    except ValueError:
        # the general path names the first bad one (start, end, then seq before at)
        _time(d.get("start")), _time(d.get("end"))
        at = None
    if type(d.get("passerby")) is not bool:
        raise EventError("passerby")
    seq = raw.get("seq")
    if seq is not None and (type(seq) is not int or not 0 < seq <= SEQ_MAX):
        raise EventError("seq")
    return Event(uid, "visit.closed", at or _time(raw.get("at")), d, seq)


def _time(value) -> datetime.datetime:
    try:
        return event_time(value)
    except ValueError:
        raise EventError("time") from None


def _str(data, key, limit, pattern=None, optional=False):
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= limit or (pattern and not pattern.match(value)):
        raise EventError(key)
    return value


def _flag(data, key) -> bool:
    """An optional boolean: absent (an older store) is False; anything but true or false is refused."""
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise EventError(key)
    return value


def _check(topic: str, d: dict) -> None:
    if topic in ("lead.upserted", "lead.merged", "consent.recorded", "lead.erased", "erase.ack", "device.linked",
                 "lead.restricted"):
        _str(d, "lead", 64, UID)
    if topic == "lead.upserted" and not d.get("gone"):
        _str(d, "email", 254, optional=True)
        _str(d, "phone", 32, optional=True)
        _str(d, "name", 80, optional=True)
        _str(d, "email_index", 64, _HEX64, optional=True)
        _str(d, "phone_index", 64, _HEX64, optional=True)
        _flag(d, "email_verified"), _flag(d, "phone_verified")  # only a contact proved by a code merges people
        _flag(d, "chain_sharing")  # merged with other stores' records only when true (absent: an older store)
        if d.get("language") not in LANGUAGES:
            raise EventError("language")
    elif topic == "lead.merged":  # the store folded a claim record into the proven one
        if _str(d, "into", 64, UID) == d["lead"]:
            raise EventError("into")
    elif topic == "lead.erased":
        _flag(d, "verified")  # chain-wide only when true
    elif topic == "lead.restricted":  # an objection or a restriction upheld (true) or lifted (false)
        if not isinstance(d.get("restricted"), bool):
            raise EventError("restricted")
    elif topic == "consent.recorded":
        if d.get("purpose") not in PURPOSES or not isinstance(d.get("granted"), bool):
            raise EventError("purpose")
        _str(d, "policy_sha256", 64, _HEX64, optional=True)
        _str(d, "method", 32, optional=True)
    elif topic in ("device.linked", "visit.closed"):
        _str(d, "device", 17, MAC)
        if topic == "visit.closed":
            _time(d.get("start")), _time(d.get("end"))
            if not isinstance(d.get("passerby"), bool):
                raise EventError("passerby")
    elif topic == "segment.members":
        _str(d, "segment", 64, UID)
        members = d.get("members")
        if not isinstance(members, list) or len(members) > MAX_MEMBERS:
            raise EventError("members")
        if not all(isinstance(m, str) and UID.match(m) for m in members):
            raise EventError("members")
    elif topic == "voucher.redeemed":  # a voucher used at the till (issue 17): webhooks carry it
        _str(d, "voucher", 64, UID)
        _str(d, "code", 20, _CODE, optional=True)
        _str(d, "lead", 64, UID, optional=True)
        _str(d, "campaign", 64, UID, optional=True)
        _str(d, "currency", 3, _CURRENCY, optional=True)
        value = d.get("value")
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10**12):
            raise EventError("value")
    elif topic == "devices.erased":
        macs = d.get("devices")
        if not isinstance(macs, list) or not all(isinstance(m, str) and MAC.match(m) for m in macs):
            raise EventError("devices")


# Webhooks (Standard Webhooks, portal/webhooks/): the message types a CRM subscribes to, the same
# at a store and at the central store. Each comes from outbox events: lead.upserted (a person's
# first record, a contact proved), consent.recorded, visit.closed (not passers-by),
# segment.members (who joined and who left), voucher.redeemed (the till) and lead.erased (the CRM
# must erase the person it knows by that pseudonym too).
WEBHOOK_TYPES = ("lead.created", "lead.verified", "consent.changed", "visit.closed", "segment.membership_changed",
                 "voucher.redeemed", "lead.erased")
