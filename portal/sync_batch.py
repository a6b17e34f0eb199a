"""What a batch says (portal/sync.py sends it): the outbox's events as the central store reads
them, personal data read and decrypted at the push (so an erasure also erases what was waiting),
encoded and compressed in outbox order. Most events, visits above all, go as the outbox holds them;
the leads a batch names are read in a few queries for the whole batch."""
from __future__ import annotations

import datetime
import gzip
import json
import logging
import re
from dataclasses import dataclass

from peewee import IntegrityError

from portal import segments
from portal.consent import VALID_SQL, shares_with_chain
from portal.core.purposes import CHAIN_SHARING
from portal.db import database
from portal.identity import Vault
from portal.models import Consent, Lead

logger = logging.getLogger("portal.sync")


def _lead(uid: str, leads: dict | None) -> Lead | None:
    """The lead `uid`, from `leads` (a batch's, read at once by prepare) when it holds it."""
    if leads is not None and uid in leads:
        return leads[uid]
    return Lead.get_or_none(Lead.uid == uid)


def _current_uid(uid: str, leads: dict | None = None) -> str:
    """The record a lead uid speaks for now: a claim folded into another record names that one."""
    for _ in range(8):  # folds chain at most a few times; bounded all the same
        lead = _lead(uid, leads)
        if lead is None or lead.merged_into_id is None:
            return uid
        uid = Lead.select(Lead.uid).where(Lead.id == lead.merged_into_id).scalar() or uid
    return uid


def _reindex(lead: Lead, vault: Vault) -> None:
    """A lead written by a portal still running on the box's pre-enrollment key (between `sync
    enroll` and its restart) gets the chain's index here, so the box finds the person again."""
    fresh = {}
    for kind in ("email", "phone"):
        value = vault.decrypt(getattr(lead, f"{kind}_enc"), f"lead.{kind}")
        stored = getattr(lead, f"{kind}_index")
        if value and stored is not None and stored != vault.blind_index(kind, value):
            fresh[f"{kind}_index"] = vault.blind_index(kind, value)
    if fresh:
        try:
            with database.atomic():
                Lead.update(**fresh).where(Lead.id == lead.id).execute()
        except IntegrityError:  # another record holds it under the chain's key: left for the desk
            logger.warning("lead %s holds a contact another record holds under the chain's key", lead.uid)


def to_wire(event, vault: Vault, leads: dict | None = None) -> dict:
    """The event (an OutboxEvent, or a row of its columns) as the central store reads it; personal
    data is read now, decrypted, so an erasure also erases what was waiting to be sent. `leads`:
    the batch's leads by uid, read at once (prepare); a lead it lacks is read here."""
    data = json.loads(event.payload)
    if event.topic == "lead.upserted":
        lead = _lead(data["lead"], leads)
        if lead is None or lead.erased_at is not None:
            data = {"lead": data["lead"], "gone": True}
        else:
            _reindex(lead, vault)
            # Only proven contacts leave the appliance (issue 11): the chain merges people on
            # them, so an unverified claim can never join or reach another person's record.
            email_ok, phone_ok = lead.email_verified_at is not None, lead.phone_verified_at is not None
            email = vault.decrypt(lead.email_enc, "lead.email") if email_ok else None
            phone = vault.decrypt(lead.phone_enc, "lead.phone") if phone_ok else None
            # The index is computed now with the push's vault (the chain's key once enrolled), not
            # read from the row: a portal still running on its pre-enrollment key wrote that one.
            data.update(email=email, phone=phone, name=vault.decrypt(lead.name_enc, "lead.name"), language=lead.language,
                        email_index=vault.blind_index("email", email) if email else None,
                        phone_index=vault.blind_index("phone", phone) if phone else None,
                        email_verified=email_ok, phone_verified=phone_ok,
                        chain_sharing=(bool(leads.sharing.get(lead.id)) if isinstance(leads, _Leads) and lead.uid in leads
                                       else shares_with_chain(lead)))  # merged across stores only when true
    elif event.topic == "consent.recorded":
        consent = Consent.get_or_none(Consent.uid == data.get("consent"))
        data["method"] = consent.method if consent else data.get("method")  # "lapsed": a material change (consent.py)
        if consent is not None:
            data["lead"] = consent.lead.uid  # a claim folded into a proven record speaks for it now
    elif event.topic == "device.linked":
        data["lead"] = _current_uid(data["lead"], leads)
    elif event.topic == "lead.restricted":
        lead = _lead(data["lead"], leads)
        if lead is not None:  # the state now: a restriction lifted before the push is sent as lifted
            data["restricted"] = lead.restricted_at is not None
    elif event.topic == "segment.members" and "members" not in data:
        # The segment job names the segment; its members are read as they are now (segments.py).
        data["members"] = segments.member_uids(data["segment"])
    wire_event = {"uid": event.uid, "topic": event.topic, "at": event.created_at.isoformat(), "data": data}
    if event.seq is not None:  # NULL: written before migration 0023, claimed by uid at the central store
        wire_event["seq"] = event.seq
    return wire_event


@dataclass(frozen=True)
class Prepared:
    ids: list[int]
    body: bytes
    top: int | None = None  # the largest seq in the batch (None: events written before seqs)
    after: int | None = None  # the seq its predecessor in flight ended with, as the body names it


# Topics sent as the outbox holds them (to_wire changes nothing of theirs): their payload, JSON the
# appliance wrote itself, goes into the batch as it is, never decoded and encoded again.
AS_WRITTEN = frozenset({"visit.closed", "lead.merged", "lead.erased", "devices.erased", "erase.ack", "voucher.redeemed"})
_STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?\Z")  # as peewee writes a naive datetime


@dataclass(frozen=True)
class _Row:
    id: int
    uid: str
    seq: int | None
    topic: str
    payload: str
    created_at: datetime.datetime


LEAD_TOPICS = ("lead.upserted", "device.linked", "lead.restricted")  # to_wire reads their lead


def _batch_leads(rows: list[tuple]) -> dict:
    """The leads the batch's events name (to_wire reads them), in a few queries instead of one each."""
    uids = set()
    for row in rows:
        if row[3] in LEAD_TOPICS:
            lead = json.loads(row[4]).get("lead")
            if isinstance(lead, str):
                uids.add(lead)
    found = _Leads()
    ordered = sorted(uids)
    for i in range(0, len(ordered), 900):
        found.update((lead.uid, lead) for lead in Lead.select().where(Lead.uid.in_(ordered[i:i + 900])))
    ids = sorted(lead.id for lead in found.values())
    for i in range(0, len(ids), 900):  # shares_with_chain of each, in one query per 900
        chunk = ids[i:i + 900]
        found.sharing.update(database.execute_sql(
            f"SELECT c.lead_id, c.granted = 1 AND {VALID_SQL} FROM consent c JOIN (SELECT max(id) AS id FROM consent "
            f"WHERE purpose = ? AND lead_id IN ({','.join('?' * len(chunk))}) GROUP BY lead_id) latest ON latest.id = c.id",
            (CHAIN_SHARING, *chunk)).fetchall())
    return found


class _Leads(dict):
    """A batch's leads by uid, and by lead id whether each shares with the chain (absent: never chose)."""

    def __init__(self):
        super().__init__()
        self.sharing: dict[int, int] = {}


def _wire_text(row: tuple, vault: Vault, leads: dict | None = None) -> str:
    """One outbox row (id, uid, seq, topic, payload, created_at as stored) as the batch's JSON text."""
    rid, uid, seq, topic, payload, created = row
    if topic in AS_WRITTEN and isinstance(created, str) and _STAMP.match(created):
        # the same text json.dumps(to_wire(...)) gives, spacing inside the payload aside
        tail = f',"seq":{seq}}}' if seq is not None else "}"
        return (f'{{"uid":{_quote(uid)},"topic":"{topic}","at":"{created[:10]}T{created[11:]}",'
                f'"data":{payload}{tail}')
    at = created if isinstance(created, datetime.datetime) else datetime.datetime.fromisoformat(created)
    return json.dumps(to_wire(_Row(rid, uid, seq, topic, payload, at), vault, leads), separators=(",", ":"))


_quote = json.encoder.encode_basestring  # a JSON string (C)


def prepare(vault: Vault, size: int, after_id: int = 0, after_seq: int | None = None) -> Prepared | None:
    """The next batch after `after_id`, encoded and compressed; None when there is none.
    `after_seq`: the seq the batch sent before this one ended with, while that one may still be
    in flight (the central applies this one only after it)."""
    # Plain rows of the columns (no model instances, no datetime parsing): most are visits, sent as written.
    rows = database.execute_sql(
        "SELECT id, uid, seq, topic, payload, created_at FROM outbox_event WHERE delivered_at IS NULL AND id > ? "
        "ORDER BY id LIMIT ?", (after_id, size)).fetchall()
    if not rows:
        return None
    tail = f',"after":{after_seq}}}' if after_seq is not None else "}"
    leads = _batch_leads(rows)
    body = gzip.compress(('{"events":[' + ",".join(_wire_text(r, vault, leads) for r in rows) + "]" + tail).encode(), 6)
    return Prepared([r[0] for r in rows], body, max((r[2] for r in rows if r[2] is not None), default=None), after_seq)
