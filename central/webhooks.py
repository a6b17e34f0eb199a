"""Webhooks from the central store (issue 17): the chain's CRM hears of every store's events.

Endpoints are added with `footfall central webhook add` (the secret is printed once). The ingest
queues messages in the transaction that applies a batch (`enqueue`, from central/ingest.py), so a
message exists exactly when its events were applied; `footfall central webhook deliver` sends what
is due (run it from a timer, or with --every as a service), with the appliance's backoff and dead
letters. The wire (signatures, safe targets, one bounded POST) is portal/webhooks/wire.py.

Consent scoping as at a store: a person is named by a keyed pseudonym of the central's person id;
a verified email rides along only with a marketing_email consent that counts chain-wide (the
latest choice at any store), a verified phone with marketing_sms; a visit names its person only
with their visit_analytics consent.
"""
from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import logging
import time
import uuid
from dataclasses import dataclass

from psycopg2.extras import execute_values

from central.db import database
from central.models import utcnow
from central.people import counted
from portal.core.events import WEBHOOK_TYPES, Event
from portal.identity import Keys, Vault
from portal.webhooks import wire

logger = logging.getLogger(__name__)
PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
CONTACT_OF = {"marketing_email": "email", "marketing_sms": "phone"}
VOUCHER_FIELDS = ("voucher", "code", "campaign", "value", "currency")
SEGMENT_CHUNK = 100


class WebhookError(ValueError):
    """A configuration we refuse; args[0] says why."""


@dataclass(frozen=True)
class Endpoint:
    id: int
    uid: str
    url: str
    events: tuple[str, ...]
    enabled: bool


def _endpoint(row) -> Endpoint:
    return Endpoint(row[0], row[1], row[2], tuple(t for t in row[3].split(",") if t), row[4])


def endpoints(enabled_only: bool = False) -> list[Endpoint]:
    sql = "SELECT id, uid, url, events, enabled FROM webhook_endpoint"
    sql += " WHERE enabled" if enabled_only else ""
    return [_endpoint(r) for r in database.execute_sql(sql + " ORDER BY id")]


def add_endpoint(url: str, types: list[str], vault: Vault, allow_loopback: bool = False,
                 resolver: wire.Resolver = wire.resolve) -> tuple[Endpoint, str]:
    """A new endpoint and its secret (shown once). The people known now count as announced."""
    try:
        wire.check_target(url, allow_loopback, resolver)
    except wire.TargetRefused as exc:
        raise WebhookError(f"{exc.code} {exc.detail}".strip()) from None
    chosen = [t for t in WEBHOOK_TYPES if t in types] if types else list(WEBHOOK_TYPES)
    if len(chosen) != len(set(types or chosen)):
        raise WebhookError(f"unknown event type; known: {', '.join(WEBHOOK_TYPES)}")
    secret = wire.new_secret()
    uid = uuid.uuid4().hex
    with database.atomic():
        cur = database.cursor()
        cur.execute("INSERT INTO webhook_endpoint (uid, url, secret_enc, events, enabled, created_at) "
                    "VALUES (%s, %s, %s, %s, TRUE, %s) RETURNING id",
                    (uid, url, vault.encrypt(secret, "webhook.secret"), ",".join(chosen), utcnow()))
        endpoint_id = cur.fetchone()[0]
        _mark_known(cur)
    return Endpoint(endpoint_id, uid, url, tuple(chosen), True), secret


def _mark_known(cur) -> None:
    """Every person and proof recorded so far counts as announced (no 'new person' for old ones)."""
    cur.execute("INSERT INTO webhook_seen (key) SELECT 'created:' || id FROM person ON CONFLICT DO NOTHING")
    for kind in ("email", "phone"):
        cur.execute(f"INSERT INTO webhook_seen (key) SELECT 'verified:{kind}:' || id || ':' || "
                    f"to_char({kind}_verified_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.US') FROM person "
                    f"WHERE {kind}_verified_at IS NOT NULL ON CONFLICT DO NOTHING")


def remove_endpoint(uid: str) -> bool:
    return bool(database.execute_sql("DELETE FROM webhook_endpoint WHERE uid = %s", (uid,)).rowcount)


def send_again(msg_id: str) -> bool:
    return bool(database.execute_sql(
        "UPDATE webhook_delivery SET state = %s, attempts = 0, next_at = %s WHERE msg_id = %s AND state = %s",
        (PENDING, utcnow(), msg_id, DEAD)).rowcount)


def counts() -> dict[str, int]:
    found = {PENDING: 0, DELIVERED: 0, DEAD: 0}
    for state, n in database.execute_sql("SELECT state, count(*) FROM webhook_delivery GROUP BY state"):
        found[state] = n
    return found


def dead_letters(limit: int = 100) -> list[tuple]:
    return list(database.execute_sql(
        "SELECT d.msg_id, d.type, e.uid, d.attempts, d.last_error FROM webhook_delivery d "
        "JOIN webhook_endpoint e ON e.id = d.endpoint_id WHERE d.state = %s ORDER BY d.id DESC LIMIT %s", (DEAD, limit)))


# -- at ingest: events applied -> queued messages (the batch's transaction) ----------------------

def snapshot(cur, store_id: str, events: list[Event], people: dict[str, int]) -> dict:
    """What the batch is about to change, read before it does: the members of the segments it
    replaces (who joined and left) and the person each erased lead was (the CRM's pseudonym)."""
    from central.people import person_of

    snap: dict = {"segments": {}, "erased": {}}
    for e in events:
        if e.topic == "segment.members" and e.data["segment"] not in snap["segments"]:
            cur.execute("SELECT person_id FROM segment_member WHERE store_id = %s AND segment = %s",
                        (store_id, e.data["segment"]))
            snap["segments"][e.data["segment"]] = {r[0] for r in cur.fetchall()}
        elif e.topic == "lead.erased":
            snap["erased"][e.data["lead"]] = person_of(cur, store_id, e.data["lead"], people)
    return snap


def _once(cur, key: str) -> bool:
    cur.execute("INSERT INTO webhook_seen (key) VALUES (%s) ON CONFLICT DO NOTHING", (key,))
    return cur.rowcount == 1


def _stamp(value: datetime.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f")


def _messages(cur, store_id: str, e: Event, people: dict[str, int], before: dict) -> list[tuple[str, dict]]:
    from central.people import person_of

    def who(uid):
        return person_of(cur, store_id, uid, people) if isinstance(uid, str) else None

    if e.topic == "lead.upserted" and not e.data.get("gone"):
        person = who(e.data["lead"])
        if person is None:
            return []
        out = []
        if _once(cur, f"created:{person}"):
            out.append(("lead.created", {"person": person}))
        cur.execute("SELECT email_verified_at, phone_verified_at FROM person WHERE id = %s AND erased_at IS NULL", (person,))
        row = cur.fetchone()
        for kind, at in zip(("email", "phone"), row or (None, None)):
            if at is not None and _once(cur, f"verified:{kind}:{person}:{_stamp(at)}"):
                out.append(("lead.verified", {"person": person, "channel": kind}))
        return out
    if e.topic == "consent.recorded":
        person = who(e.data["lead"])
        return [("consent.changed", {"person": person, "purpose": e.data["purpose"], "granted": e.data["granted"]})] \
            if person is not None else []
    if e.topic == "visit.closed" and not e.data["passerby"]:
        person = before["devices"].get(e.data["device"])
        if person is None:
            return []  # a device linked to no one: its visit was not kept here (central/ingest.py)
        return [("visit.closed", {"person": person, "start": e.data["start"], "end": e.data["end"]})]
    if e.topic == "segment.members":
        segment = e.data["segment"]
        cur.execute("SELECT person_id FROM segment_member WHERE store_id = %s AND segment = %s", (store_id, segment))
        now = {r[0] for r in cur.fetchall()}
        old = before["segments"].get(segment, set())
        changes = [("added", p) for p in sorted(now - old)] + [("removed", p) for p in sorted(old - now)]
        before["segments"][segment] = now  # a second event for the segment in this batch diffs against this one
        return [("segment.membership_changed", {"segment": segment,
                                                "added": [p for how, p in changes[i:i + SEGMENT_CHUNK] if how == "added"],
                                                "removed": [p for how, p in changes[i:i + SEGMENT_CHUNK] if how == "removed"]})
                for i in range(0, len(changes), SEGMENT_CHUNK)]
    if e.topic == "voucher.redeemed":
        subject = {k: e.data[k] for k in VOUCHER_FIELDS if isinstance(e.data.get(k), (str, int, float, bool))}
        return [("voucher.redeemed", {"person": who(e.data.get("lead")), **subject})]
    if e.topic == "lead.erased":
        person = before["erased"].get(e.data["lead"])
        return [("lead.erased", {"person": person})] if person is not None else []
    return []


def enqueue(cur, store_id: str, events: list[Event], people: dict[str, int], before: dict) -> int:
    """Queue the messages of the events just applied (in the ingest's transaction)."""
    cur.execute("SELECT id, uid, url, events, enabled FROM webhook_endpoint WHERE enabled")
    active = [_endpoint(r) for r in cur.fetchall()]
    if not active:
        return 0
    macs = sorted({e.data["device"] for e in events if e.topic == "visit.closed"})
    if macs:  # one query for the batch's visits (they are most of what stores send)
        cur.execute("SELECT mac, person_id FROM device WHERE store_id = %s AND mac = ANY(%s) AND person_id IS NOT NULL",
                    (store_id, macs))
        before["devices"] = dict(cur.fetchall())
    else:
        before["devices"] = {}
    rows = []
    now = utcnow()
    for e in events:
        for kind, subject in _messages(cur, store_id, e, people, before):
            for endpoint in active:
                if kind in endpoint.events:
                    rows.append((endpoint.id, f"msg_{uuid.uuid4().hex}", kind,
                                 json.dumps({"store": store_id, **subject}, sort_keys=True), e.at, now, now))
    if rows:
        execute_values(cur, "INSERT INTO webhook_delivery (endpoint_id, msg_id, type, subject, happened_at, created_at, "
                       "next_at) VALUES %s", rows, page_size=2000)
    return len(rows)


# -- delivery ------------------------------------------------------------------------------------

def person_key(keys: Keys) -> bytes:
    return hmac.new(keys.secret, b"webhook.person", hashlib.sha256).digest()


def _consents(person: int) -> dict[str, bool]:
    rows = database.execute_sql("SELECT DISTINCT ON (purpose) purpose, granted FROM consent_event WHERE person_id = %s "
                                "ORDER BY purpose, at DESC, id DESC", (person,))
    return {purpose: granted for purpose, granted in rows}


def _restricted(person_id: int) -> bool:
    from central.people import UNRESTRICTED
    return bool(database.execute_sql(f"SELECT NOT {UNRESTRICTED} FROM person p WHERE p.id = %s", (person_id,)).fetchone()[0])


def person(person_id: int | None, vault: Vault, key: bytes) -> dict | None:
    if person_id is None:
        return None
    ref: dict = {"id": wire.pseudonym(key, f"central:{person_id}")}
    row = database.execute_sql("SELECT email_enc, phone_enc, name_enc, language, email_verified_at, phone_verified_at, "
                               "erased_at FROM person WHERE id = %s", (person_id,)).fetchone()
    if row is None or row[6] is not None:
        return ref
    if _restricted(person_id):  # a store upheld an objection or a restriction: the pseudonym alone
        return ref
    email_enc, phone_enc, name_enc, language, email_at, phone_at, _ = row
    channels = frozenset(k for k, at, enc in (("email", email_at, email_enc), ("phone", phone_at, phone_enc))
                         if at is not None and enc is not None)
    counts, _ = counted(_consents(person_id), channels)
    consented = sorted(p for p, granted in counts.items() if granted and p in CONTACT_OF
                       and CONTACT_OF[p] in channels)
    for purpose in consented:
        kind = CONTACT_OF[purpose]
        ref[kind] = vault.decrypt(email_enc if kind == "email" else phone_enc, f"person.{kind}")
    if len(ref) > 1:
        name = vault.decrypt(name_enc, "person.name") if name_enc is not None else None
        if name:
            ref["name"] = name
        ref["language"], ref["marketing"] = language, consented
    return ref


def _data(kind: str, subject: dict, vault: Vault, key: bytes) -> dict:
    data: dict = {"store": subject.get("store")}
    if kind == "visit.closed":
        p = subject.get("person")
        follows = p is not None and _consents(p).get("visit_analytics") is True and not _restricted(p)
        data.update(person=person(p, vault, key) if follows else None, start=subject.get("start"), end=subject.get("end"))
    elif kind == "segment.membership_changed":
        data.update(segment=subject.get("segment"), added=[person(p, vault, key) for p in subject.get("added", [])],
                    removed=[person(p, vault, key) for p in subject.get("removed", [])])
    else:
        data["person"] = person(subject.get("person"), vault, key)
        data.update({k: v for k, v in subject.items() if k in ("channel", "purpose", "granted", *VOUCHER_FIELDS)})
    return data


def deliver_due(vault: Vault, key: bytes, timeout: float = 10.0, max_attempts: int = 10, allow_loopback: bool = False,
                budget: float = 50.0, now=utcnow, resolver: wire.Resolver = wire.resolve) -> dict:
    """Send the due messages (oldest first); a failing endpoint is left alone for the rest of the run."""
    started = time.monotonic()
    totals = {"delivered": 0, "failed": 0, "dead": 0}
    failing: set[int] = set()
    due = list(database.execute_sql(
        "SELECT d.id, d.msg_id, d.type, d.subject, d.happened_at, d.attempts, e.id, e.url, e.secret_enc "
        "FROM webhook_delivery d JOIN webhook_endpoint e ON e.id = d.endpoint_id "
        "WHERE d.state = %s AND d.next_at <= %s AND e.enabled ORDER BY d.next_at, d.id LIMIT 500", (PENDING, now())))
    for did, msg_id, kind, subject, happened, attempts, eid, url, secret_enc in due:
        if time.monotonic() - started > budget:
            break
        if eid in failing:
            continue
        payload = wire.body(kind, happened.replace(microsecond=0).isoformat() + "Z", _data(kind, json.loads(subject), vault, key))
        secret = vault.decrypt(bytes(secret_enc), "webhook.secret") or ""
        outcome = wire.post(url, wire.headers(secret, msg_id, int(time.time()), payload), payload, timeout,
                            allow_loopback, resolver)
        attempts += 1
        if outcome.ok:
            database.execute_sql("UPDATE webhook_delivery SET state = %s, attempts = %s, delivered_at = %s, last_status = %s, "
                                 "last_error = NULL WHERE id = %s", (DELIVERED, attempts, now(), outcome.status, did))
            totals["delivered"] += 1
            continue
        failing.add(eid)
        dead = attempts >= max_attempts
        database.execute_sql("UPDATE webhook_delivery SET state = %s, attempts = %s, last_status = %s, last_error = %s, "
                             "next_at = %s WHERE id = %s",
                             (DEAD if dead else PENDING, attempts, outcome.status, outcome.error[:300],
                              now() + datetime.timedelta(seconds=wire.backoff(attempts)), did))
        totals["dead" if dead else "failed"] += 1
        logger.warning("webhook %s failed (attempt %d): %s", msg_id, attempts, outcome.error)
    return totals
