"""The appliance's webhooks: endpoints, the durable queue fed from the outbox, delivery and dead letters.

Every change a CRM may hear of is already an outbox event, written in the same transaction as
the change (portal/core/events.py; the collector writes visits' events itself). The scheduler's
`webhooks` job reads the outbox past a high-water mark and turns each event into webhook
messages (`fan_out`), one queue row per subscribed endpoint, in one transaction with the mark:
nothing is lost to a crash, nothing is queued twice. Then it delivers what is due (`deliver_due`).
Only the scheduler does this; web workers only configure endpoints and put a dead letter back.

A queue row holds identifiers only (a lead's uid, a device's MAC, a segment's key). The body is
built when it is sent, from the current records: an erasure or a withdrawn consent also changes
what was waiting (like the sync's outbox). A person is named by a stable keyed pseudonym; their
contact details ride along only for the marketing purposes they agreed to and proved (a verified
email for marketing_email, a verified phone for marketing_sms: portal.consent.effective_purposes).
"""
from __future__ import annotations

import datetime
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from peewee import BlobField, BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField, TextField

from portal.consent import effective_purposes, follows_visits
from portal.core.events import WEBHOOK_TYPES
from portal.db import database
from portal.identity import Vault
from portal.models import BaseModel, Device, Lead, OutboxEvent, StoreSetting, new_uid, utcnow
from portal.webhooks import wire

logger = logging.getLogger(__name__)
MARK_KEY = "webhooks.outbox_mark"
FAN_OUT_BATCH = 500       # outbox events read per transaction
SEGMENT_CHUNK = 100       # people per segment.membership_changed message
MAX_ENDPOINTS = 10        # a store's CRMs; each message is queued once per endpoint
PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
# The contact a marketing purpose lets a CRM have (each counts only with its channel proved).
CONTACT_OF = {"marketing_email": "email", "marketing_sms": "phone"}
# Fields of a voucher.redeemed outbox event passed on as they are (never the person: see `person`).
VOUCHER_FIELDS = ("voucher", "code", "campaign", "value", "currency")


class WebhookEndpoint(BaseModel):
    uid = CharField(unique=True, default=new_uid)
    url = CharField(max_length=2048)
    secret_enc = BlobField()          # AES-GCM (portal.identity.Vault), context "webhook.secret"
    events = TextField()              # comma-separated WEBHOOK_TYPES
    enabled = BooleanField(default=True)
    created_at = DateTimeField(default=utcnow)
    created_by = CharField()

    @property
    def types(self) -> list[str]:
        return [t for t in self.events.split(",") if t]


class WebhookDelivery(BaseModel):
    endpoint = ForeignKeyField(WebhookEndpoint, on_delete="CASCADE", backref="deliveries")
    msg_id = CharField(unique=True)   # webhook-id: the same on every attempt
    type = CharField()
    subject = TextField()             # JSON of identifiers; the body is built at each attempt
    happened_at = DateTimeField()
    created_at = DateTimeField(default=utcnow)
    state = CharField(default=PENDING)
    attempts = IntegerField(default=0)
    next_at = DateTimeField(default=utcnow)
    last_status = IntegerField(null=True)
    last_error = TextField(null=True)
    delivered_at = DateTimeField(null=True)


class WebhookSeen(BaseModel):
    key = CharField(unique=True)       # created:<lead uid>, verified:<kind>:<lead uid>:<when>


class WebhookSegmentMember(BaseModel):
    segment = CharField()
    lead_uid = CharField()


class WebhookError(ValueError):
    """A configuration we refuse; args[0] is the panel's message key."""


@dataclass(frozen=True)
class Created:
    endpoint: WebhookEndpoint
    secret: str  # shown once, never again


# -- configuration (the panel) -------------------------------------------------------------------

def parse_types(values: list[str]) -> list[str]:
    chosen = [t for t in WEBHOOK_TYPES if t in values]
    if not chosen or len(set(values)) != len(chosen):
        raise WebhookError("err_webhook_events")
    return chosen


def add_endpoint(url: str, types: list[str], vault: Vault, actor: str, allow_loopback: bool = False,
                 resolver: wire.Resolver = wire.resolve) -> Created:
    """A new endpoint with a fresh secret (returned once). Refuses a URL we would not send to."""
    url = (url or "").strip()
    if WebhookEndpoint.select().count() >= MAX_ENDPOINTS:
        raise WebhookError("err_webhook_too_many")
    try:
        wire.check_target(url, allow_loopback, resolver)
    except wire.TargetRefused as exc:
        raise WebhookError(exc.code) from None
    chosen = parse_types(types)
    secret = wire.new_secret()
    endpoint = WebhookEndpoint.create(url=url, secret_enc=vault.encrypt(secret, "webhook.secret"),
                                      events=",".join(chosen), created_by=actor)
    return Created(endpoint, secret)


def secret_of(endpoint: WebhookEndpoint, vault: Vault) -> str:
    return vault.decrypt(endpoint.secret_enc, "webhook.secret") or ""


def set_enabled(endpoint: WebhookEndpoint, enabled: bool) -> None:
    WebhookEndpoint.update(enabled=enabled).where(WebhookEndpoint.id == endpoint.id).execute()


def remove_endpoint(endpoint: WebhookEndpoint) -> None:
    endpoint.delete_instance()  # its queued messages go with it (ON DELETE CASCADE)


def send_again(delivery_id: int, now: datetime.datetime | None = None) -> bool:
    """Put a dead letter back in the queue, due now, with its attempts counted afresh."""
    return bool(WebhookDelivery.update(state=PENDING, attempts=0, next_at=now or utcnow()).where(
        (WebhookDelivery.id == delivery_id) & (WebhookDelivery.state == DEAD)).execute())


def dead_letters(limit: int = 200) -> list[WebhookDelivery]:
    return list(WebhookDelivery.select(WebhookDelivery, WebhookEndpoint).join(WebhookEndpoint)
                .where(WebhookDelivery.state == DEAD).order_by(WebhookDelivery.id.desc()).limit(limit))


def counts() -> dict[str, int]:
    found = {PENDING: 0, DELIVERED: 0, DEAD: 0}
    for state, n in database.execute_sql("SELECT state, count(*) FROM webhook_delivery GROUP BY state"):
        found[state] = n
    return found


# -- fan-out: outbox events -> queued messages ---------------------------------------------------

def mark() -> int:
    row = StoreSetting.get_or_none(StoreSetting.key == MARK_KEY)
    return int(json.loads(row.value)) if row else 0


def _set_mark(value: int) -> None:
    StoreSetting.insert(key=MARK_KEY, value=json.dumps(value), updated_at=utcnow()).on_conflict(
        conflict_target=[StoreSetting.key], update={StoreSetting.value: json.dumps(value), StoreSetting.updated_at: utcnow()}
    ).execute()


def _once(key: str) -> bool:
    if WebhookSeen.get_or_none(WebhookSeen.key == key) is not None:
        return False
    WebhookSeen.create(key=key)
    return True


def messages_of(topic: str, payload: dict) -> list[tuple[str, dict]]:
    """The webhook messages (type, subject) one outbox event makes; records what it announced."""
    if topic == "lead.upserted":
        lead = Lead.get_or_none(Lead.uid == payload.get("lead"))
        if lead is None or lead.erased_at is not None:
            return []
        out = []
        if _once(f"created:{lead.uid}"):
            out.append(("lead.created", {"lead": lead.uid}))
        for kind in ("email", "phone"):
            at = getattr(lead, f"{kind}_verified_at")
            if at is not None and _once(f"verified:{kind}:{lead.uid}:{at}"):
                out.append(("lead.verified", {"lead": lead.uid, "channel": kind}))
        return out
    if topic == "consent.recorded":
        return [("consent.changed", {k: payload.get(k) for k in ("lead", "consent", "purpose", "granted")})]
    if topic == "visit.closed":
        if payload.get("passerby"):
            return []
        return [("visit.closed", {k: payload.get(k) for k in ("device", "start", "end")})]
    if topic == "segment.members":
        members = payload.get("members")
        if members is None:  # the segment job names the segment; its members are read now (portal/segments.py)
            from portal.segments import member_uids
            members = member_uids(str(payload.get("segment")))
        return _segment_changes(str(payload.get("segment")), members or [])
    if topic == "voucher.redeemed":
        return [("voucher.redeemed", payload)]
    if topic == "lead.erased":
        return [("lead.erased", {"lead": payload.get("lead")})]
    return []


def _segment_changes(segment: str, members: list[str]) -> list[tuple[str, dict]]:
    before = {r.lead_uid for r in WebhookSegmentMember.select(WebhookSegmentMember.lead_uid)
              .where(WebhookSegmentMember.segment == segment)}
    now = set(members)
    added, removed = sorted(now - before), sorted(before - now)
    if removed:
        for i in range(0, len(removed), 500):
            WebhookSegmentMember.delete().where((WebhookSegmentMember.segment == segment)
                                                & WebhookSegmentMember.lead_uid.in_(removed[i:i + 500])).execute()
    for i in range(0, len(added), 500):
        WebhookSegmentMember.insert_many([{"segment": segment, "lead_uid": u} for u in added[i:i + 500]]).execute()
    changes = [("added", u) for u in added] + [("removed", u) for u in removed]
    out = []
    for i in range(0, len(changes), SEGMENT_CHUNK):
        chunk = changes[i:i + SEGMENT_CHUNK]
        out.append(("segment.membership_changed", {"segment": segment,
                                                   "added": [u for how, u in chunk if how == "added"],
                                                   "removed": [u for how, u in chunk if how == "removed"]}))
    return out


def fan_out(limit: int = FAN_OUT_BATCH) -> tuple[int, int]:
    """Queue the messages of the outbox events past the mark (at most `limit` events); returns
    (events read, messages queued). One transaction: the mark moves with the rows it queued."""
    queued = 0
    with database.atomic():
        start = mark()
        events = list(OutboxEvent.select().where(OutboxEvent.id > start).order_by(OutboxEvent.id).limit(limit))
        if not events:
            return 0, 0
        endpoints = list(WebhookEndpoint.select().where(WebhookEndpoint.enabled == True))  # noqa: E712
        now = utcnow()
        for event in events:
            try:
                payload = json.loads(event.payload)
            except ValueError:
                continue
            for kind, subject in messages_of(event.topic, payload if isinstance(payload, dict) else {}):
                for endpoint in endpoints:
                    if kind in endpoint.types:
                        WebhookDelivery.create(endpoint=endpoint, msg_id=f"msg_{uuid.uuid4().hex}", type=kind,
                                               subject=json.dumps(subject, sort_keys=True, default=str),
                                               happened_at=event.created_at, next_at=now)
                        queued += 1
        _set_mark(events[-1].id)
    return len(events), queued


# -- the body, built at send time ----------------------------------------------------------------

def _current(uid: str) -> Lead | None:
    """The record a lead uid speaks for now (a claim folded into a proven record names that one)."""
    for _ in range(8):
        lead = Lead.get_or_none(Lead.uid == uid)
        if lead is None or lead.merged_into_id is None:
            return lead
        uid = Lead.select(Lead.uid).where(Lead.id == lead.merged_into_id).scalar() or uid
    return None


def person(uid: str | None, vault: Vault, key: bytes) -> dict | None:
    """How a message names a person: always the pseudonymous id; their verified contacts only for
    the marketing purposes that count now; nothing else (never the database id, never a MAC)."""
    if not uid:
        return None
    lead = _current(uid)
    ref: dict = {"id": wire.pseudonym(key, lead.uid if lead is not None else uid)}
    if lead is None or lead.erased_at is not None or lead.restricted_at is not None:
        return ref
    purposes = effective_purposes(lead)
    consented = sorted(p for p in purposes if p in CONTACT_OF)
    for purpose in consented:
        kind = CONTACT_OF[purpose]
        if getattr(lead, f"{kind}_verified_at") is not None:
            value = vault.decrypt(getattr(lead, f"{kind}_enc"), f"lead.{kind}")
            if value:
                ref[kind] = value
    if len(ref) > 1:
        name = vault.decrypt(lead.name_enc, "lead.name")
        if name:
            ref["name"] = name
        ref["language"] = lead.language
        ref["marketing"] = consented
    return ref


def data_of(delivery: WebhookDelivery, vault: Vault, key: bytes, store_id: str) -> dict:
    subject = json.loads(delivery.subject)
    data: dict = {"store": store_id}
    kind = delivery.type
    if kind in ("lead.created", "lead.verified", "consent.changed", "lead.erased"):
        data["person"] = person(subject.get("lead"), vault, key)
        if kind == "lead.verified":
            data["channel"] = subject.get("channel")
        if kind == "consent.changed":
            data["purpose"], data["granted"] = subject.get("purpose"), subject.get("granted")
    elif kind == "visit.closed":
        device = Device.get_or_none(Device.mac == subject.get("device"))
        lead = device.lead if device is not None and device.lead_id is not None else None
        # A person's visits are followed only with their visit_analytics consent; otherwise anonymous.
        # (The one rule of who is followed: restricted or erased people are not, whatever they agreed to.)
        followed = lead is not None and lead.restricted_at is None and lead.erased_at is None and follows_visits(lead)
        data["person"] = person(lead.uid, vault, key) if followed else None
        data["start"], data["end"] = subject.get("start"), subject.get("end")
    elif kind == "segment.membership_changed":
        data["segment"] = subject.get("segment")
        data["added"] = [person(u, vault, key) for u in subject.get("added", [])]
        data["removed"] = [person(u, vault, key) for u in subject.get("removed", [])]
    elif kind == "voucher.redeemed":
        data["person"] = person(subject.get("lead"), vault, key)
        data.update({k: subject[k] for k in VOUCHER_FIELDS
                     if isinstance(subject.get(k), (str, int, float, bool)) and len(str(subject[k])) <= 200})
    return data


def _iso(value: datetime.datetime) -> str:
    return value.replace(microsecond=0).isoformat() + "Z"


# -- delivery (the scheduler) --------------------------------------------------------------------

@dataclass(frozen=True)
class Sender:
    vault: Vault
    person_key: bytes
    store_id: str
    timeout: float = 10.0
    max_attempts: int = 10
    allow_loopback: bool = False
    resolver: wire.Resolver = wire.resolve


def deliver_due(sender: Sender, budget: float = 20.0, now: Callable[[], datetime.datetime] = utcnow,
                limit: int = 200) -> dict:
    """Send the messages that are due, oldest first, within `budget` seconds. An endpoint that
    fails is not tried again in this run (its other messages wait, with no attempt charged)."""
    started = time.monotonic()
    totals = {"delivered": 0, "failed": 0, "dead": 0}
    failing: set[int] = set()
    due = list(WebhookDelivery.select(WebhookDelivery, WebhookEndpoint).join(WebhookEndpoint)
               .where((WebhookDelivery.state == PENDING) & (WebhookDelivery.next_at <= now())
                      & (WebhookEndpoint.enabled == True))  # noqa: E712
               .order_by(WebhookDelivery.next_at, WebhookDelivery.id).limit(limit))
    for delivery in due:
        if time.monotonic() - started > budget:
            break
        if delivery.endpoint_id in failing:
            continue
        outcome = attempt(delivery, sender)
        attempts = delivery.attempts + 1
        if outcome.ok:
            WebhookDelivery.update(state=DELIVERED, attempts=attempts, delivered_at=now(), last_status=outcome.status,
                                   last_error=None).where(WebhookDelivery.id == delivery.id).execute()
            totals["delivered"] += 1
            continue
        failing.add(delivery.endpoint_id)
        dead = attempts >= sender.max_attempts
        WebhookDelivery.update(
            state=DEAD if dead else PENDING, attempts=attempts, last_status=outcome.status,
            last_error=outcome.error[:300],
            next_at=now() + datetime.timedelta(seconds=wire.backoff(attempts))).where(
            WebhookDelivery.id == delivery.id).execute()
        totals["dead" if dead else "failed"] += 1
        logger.warning("webhook %s to endpoint %s failed (attempt %d): %s", delivery.msg_id, delivery.endpoint.uid,
                       attempts, outcome.error)
    return totals


def attempt(delivery: WebhookDelivery, sender: Sender) -> wire.Outcome:
    """One signed POST of the message as the records say now."""
    data = data_of(delivery, sender.vault, sender.person_key, sender.store_id)
    payload = wire.body(delivery.type, _iso(delivery.happened_at), data)
    secret = secret_of(delivery.endpoint, sender.vault)
    stamp = int(time.time())  # the receiver checks it against its own clock
    return wire.post(delivery.endpoint.url, wire.headers(secret, delivery.msg_id, stamp, payload), payload,
                     sender.timeout, sender.allow_loopback, sender.resolver)


def purge_delivered(days: int = 7) -> int:
    """Delivered messages older than `days` (their ids were the receivers' dedupe keys)."""
    cutoff = utcnow() - datetime.timedelta(days=days)
    return WebhookDelivery.delete().where((WebhookDelivery.state == DELIVERED)
                                          & (WebhookDelivery.delivered_at < cutoff)).execute()
