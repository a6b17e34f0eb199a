"""Signed batches from the stores, applied exactly once and in bulk.

Wire format: POST /v1/ingest, body = gzip(JSON {"events": [...]}), headers X-Footfall-Store,
X-Footfall-Timestamp and X-Footfall-Signature (portal/core/wire.py defines the signatures, of the
batch and of the answer; central/batch.py reads the body). A batch is verified whole and applied
whole in one transaction, or refused whole: nothing is applied from a batch that fails any check.
"""
from __future__ import annotations

import base64
import io
import logging
import re
import time

from psycopg2.extras import execute_values

from central import chainstat, webhooks
from central.batch import Refused
from central.db import database
from central.models import Store, utcnow
from central.people import erase_lead, erase_person, lock_indexes, merge, person_of, restrict_lead, upsert_lead
from central.visits import forget_devices
from portal.core import wire
from portal.core.events import UID, Event
from portal.core.times import event_time
from portal.identity import Vault

logger = logging.getLogger(__name__)
__all__ = ["Refused", "verify", "apply", "erase_person", "sign"]
# Exactly once: by the store's high-water mark (Store.seq_applied) for events with a seq, by a
# claim of each event id (applied_event) for those of appliances not yet upgraded.
sign = wire.sign  # the batch signature, defined in portal.core.wire
AWAIT_SECONDS = 2.0  # how long a batch waits for its predecessor (`after`) before answering 409


def store_key(store: Store, vault: Vault) -> bytes:
    return base64.b64decode(vault.decrypt(store.key_enc, "store.key"))


def verify(headers, body: bytes, vault: Vault, window: int, now: float) -> tuple[Store, bytes]:
    """The store that signed this batch, and its key (the answer is signed with it)."""
    store_id = headers.get(wire.STORE_HEADER, "")
    raw_stamp = headers.get(wire.TIMESTAMP_HEADER, "")
    stamp = wire.parse_timestamp(raw_stamp)
    signature = headers.get(wire.SIGNATURE_HEADER, "")
    if raw_stamp and stamp is None:  # "²", "１２", "-1", forty digits: a clear 400, never int()'s 500
        raise Refused(400, f"{wire.TIMESTAMP_HEADER} must be epoch seconds in ASCII digits")
    if not UID.match(store_id) or stamp is None or not wire.well_formed_signature(signature):
        raise Refused(401, "missing or malformed X-Footfall-Store, X-Footfall-Timestamp or X-Footfall-Signature")
    store = Store.get_or_none(Store.id == store_id)
    key = store_key(store, vault) if store else b"\0" * 32  # the same work for unknown stores
    if store is None or not wire.same(wire.sign(key, stamp, body), signature):
        raise Refused(401, "unknown store or bad signature")
    if not wire.fresh(stamp, now, window):
        raise Refused(401, f"timestamp outside the {window} s replay window (check the store's clock)")
    return store, key


# -- applying ------------------------------------------------------------------------------------

def apply(store: Store, events: list[Event], vault: Vault, after: int | None = None) -> dict:
    """Apply the events not seen before, in one transaction; returns counts and commands.

    `after`: the seq the store's previous batch ended with, from a store with several batches in
    flight. This one is applied only once that one was (the store's mark reached it): it waits a
    little for it, then answers 409 (the store sends it again after its predecessor's answer)."""
    try:
        return _apply(store, events, vault, after)
    except Behind:  # its predecessor has not even reached the store's row yet: wait for it a little
        _await_mark(store.id, after)
        return _apply(store, events, vault, after)


class Behind(Refused):
    def __init__(self, after: int):
        super().__init__(409, f"the batch before this one (up to seq {after}) is not applied yet: send again after it")


def _apply(store: Store, events: list[Event], vault: Vault, after: int | None) -> dict:
    with database.atomic():
        cur = database.cursor()
        fresh = _fresh(cur, store.id, events, after)
        seen: set[str] = set()
        fresh = [e for e in fresh if not (e.uid in seen or seen.add(e.uid))]
        people = Touched()  # this store's lead uid > person, kept true by central.people
        leads = [e for e in fresh if e.topic == "lead.upserted" and not e.data.get("gone")]
        lock_indexes(cur, [e.data for e in leads])
        for e in leads:
            upsert_lead(cur, store.id, e.data, e.at, vault, people)
        _apply_links(cur, store, [e for e in fresh if e.topic == "device.linked"], people)
        _apply_consents(cur, store, [e for e in fresh if e.topic == "consent.recorded"], people)
        visits: list[tuple] = []  # (person, start, end) of the visits kept that are not passers-by
        anonymous = _apply_visits(cur, store, [e for e in fresh if e.topic == "visit.closed"], visits)
        for e in fresh:  # after what they fold, so a batch holding the records and their merge works
            if e.topic == "lead.merged":
                merge(cur, store.id, e.data["lead"], e.data["into"], people)
        before = webhooks.snapshot(cur, store.id, fresh, people)  # for webhooks: who joins and leaves, who is erased
        for e in fresh:
            if e.topic == "segment.members":
                _apply_segment(cur, store, e)
        for e in fresh:  # after the segments: a restricted person leaves this store's segments
            if e.topic == "lead.restricted":
                restrict_lead(cur, store.id, e.data["lead"], e.data["restricted"], e.at, people)
        for e in fresh:
            if e.topic == "devices.erased":
                people.ever.update(forget_devices(cur, "store_id = %s AND mac = ANY(%s)", (store.id, e.data["devices"])))
            elif e.topic == "lead.erased":
                erase_lead(cur, store.id, e.data["lead"], e.data.get("verified") is True, people)
            elif e.topic == "erase.ack":
                cur.execute("UPDATE erase_command SET acked_at = %s WHERE store_id = %s AND lead_uid = %s AND acked_at IS NULL",
                            (utcnow(), store.id, e.data["lead"]))
        webhooks.enqueue(cur, store.id, fresh, people, before)  # the chain's CRM endpoints, if any
        # Last: the chain segments' rows of everyone the batch touched; those it only brought visits
        # get them merged into their row, the others are recomputed.
        chainstat.refresh(cur, people.ever, visits)
        cur.execute("UPDATE store SET events_applied = events_applied + %s, last_seen_at = %s WHERE id = %s",
                    (len(fresh), utcnow(), store.id))
        cur.execute("SELECT lead_uid FROM erase_command WHERE store_id = %s AND acked_at IS NULL ORDER BY id LIMIT 1000",
                    (store.id,))
        commands = [{"erase_lead": row[0]} for row in cur.fetchall()]
    if anonymous:
        logger.info("store %s sent %d visits of devices linked to no one: ignored", store.id, anonymous)
    return {"applied": len(fresh), "duplicates": len(events) - len(fresh), "commands": commands,
            "ignored_anonymous": anonymous}


class Touched(dict):
    """The batch's lead uid > person cache, remembering every person it ever named (`ever`): the
    people whose chain segment rows the batch may have changed (their leads, consents, devices,
    visits, merges, splits, erasures), besides the owners of the devices it touched."""

    def __init__(self):
        super().__init__()
        self.ever: set[int] = set()

    def __setitem__(self, uid: str, person: int) -> None:
        self.ever.add(person)
        super().__setitem__(uid, person)


def _await_mark(store_id: str, after: int) -> None:
    """Until the store's mark reaches `after` or AWAIT_SECONDS pass, outside any transaction (no
    lock held: the predecessor, still travelling, takes the store's row when it arrives). One
    being applied holds that row: `_fresh` waits for it there, without polling."""
    deadline = time.monotonic() + AWAIT_SECONDS
    while True:
        mark = database.execute_sql("SELECT seq_applied FROM store WHERE id = %s", (store_id,)).fetchone()[0] or 0
        if mark >= after or time.monotonic() > deadline:
            return
        time.sleep(0.02)


def _fresh(cur, store_id: str, events: list[Event], after: int | None = None) -> list[Event]:
    """The events never applied, in batch order; moves the store's high-water mark past them.

    The store's row is locked first: a store's batches are applied one after the other (its
    retries, a request a fault proxy held back), while other stores' go on in parallel. An event
    with a seq is new when above the mark (the store sends oldest first, and central/batch.py
    checked that seqs grow within the batch); one without (an appliance not yet upgraded) is
    claimed by uid, as before. A batch naming `after` is refused (409) while the mark is below it:
    its predecessor's events, below its own, would otherwise be dropped as already applied. Waiting
    for that predecessor happens here too: while it is being applied it holds the store's row.
    """
    cur.execute("SELECT seq_applied FROM store WHERE id = %s FOR UPDATE", (store_id,))
    mark = cur.fetchone()[0] or 0
    if after is not None and mark < after:  # its predecessor was not applied (yet, or refused)
        raise Behind(after)
    legacy = list(dict.fromkeys(e.uid for e in events if e.seq is None))
    claimed = _claim(cur, store_id, legacy) if legacy else set()
    fresh = [e for e in events if (e.uid in claimed if e.seq is None else e.seq > mark)]
    top = max((e.seq for e in events if e.seq is not None), default=0)
    if top > mark:
        cur.execute("UPDATE store SET seq_applied = %s WHERE id = %s", (top, store_id))
    return fresh


def _claim(cur, store_id: str, uids: list[str]) -> set[str]:
    """Record the event ids; returns those never seen before (the ones to apply)."""
    if not uids:
        return set()
    cur.execute("CREATE TEMP TABLE IF NOT EXISTS incoming (event_uid text) ON COMMIT DELETE ROWS")
    cur.copy_expert("COPY incoming (event_uid) FROM STDIN", io.StringIO("\n".join(uids) + "\n"))
    cur.execute("INSERT INTO applied_event (store_id, event_uid, applied_at) SELECT %s, event_uid, %s FROM incoming "
                "ON CONFLICT DO NOTHING RETURNING event_uid", (store_id, utcnow()))
    return {row[0] for row in cur.fetchall()}


def _device_ids(cur, store_id: str, macs: set[str]) -> dict[str, int]:
    """Ids of the store's devices, inserting only those not known yet (most are)."""
    rows = sorted(macs)
    if not rows:
        return {}
    cur.execute("SELECT mac, id FROM device WHERE store_id = %s AND mac = ANY(%s)", (store_id, rows))
    ids = dict(cur.fetchall())
    missing = [m for m in rows if m not in ids]
    if missing:
        execute_values(cur, "INSERT INTO device (store_id, mac) VALUES %s ON CONFLICT (store_id, mac) DO NOTHING",
                       [(store_id, m) for m in missing], page_size=2000)
        cur.execute("SELECT mac, id FROM device WHERE store_id = %s AND mac = ANY(%s)", (store_id, missing))
        ids.update(cur.fetchall())
    return ids


def _apply_links(cur, store: Store, events: list[Event], people: Touched) -> None:
    """A device becomes known here only as a live person's: a link to a lead unknown here, or to a
    person erased, records nothing (no MAC of anyone unknown is kept)."""
    links = []
    for e in events:
        person = person_of(cur, store.id, e.data["lead"], people)
        if person is not None:
            links.append((e.data["device"], person))
    if not links:
        return
    # FOR SHARE: an erasure of one of them (its UPDATE of the row) waits for this batch and then deletes
    # the device linked here, or went first and the person is read as erased (review stop 23).
    cur.execute("SELECT id FROM person WHERE id = ANY(%s) AND erased_at IS NULL ORDER BY id FOR SHARE",
                (sorted({p for _, p in links}),))
    live = {row[0] for row in cur.fetchall()}
    links = [(mac, person) for mac, person in links if person in live]
    ids = _device_ids(cur, store.id, {mac for mac, _ in links})
    cur.execute("SELECT person_id FROM device WHERE id = ANY(%s) AND person_id IS NOT NULL", (sorted(ids.values()),))
    people.ever.update(row[0] for row in cur.fetchall())  # a device linked anew takes its visits from its former owner
    final = {ids[mac]: person for mac, person in links}  # a device linked twice in the batch: the later link
    cur.execute("UPDATE device d SET person_id = u.person FROM unnest(%s::int[], %s::int[]) AS u (id, person) "
                "WHERE d.id = u.id", (sorted(final), [final[i] for i in sorted(final)]))


def _apply_consents(cur, store: Store, events: list[Event], people: dict[str, int]) -> None:
    rows = []
    for e in events:
        person = person_of(cur, store.id, e.data["lead"], people)
        if person is not None:
            rows.append((person, store.id, e.data["purpose"], e.data["granted"], e.at, e.data.get("policy_sha256"),
                         e.data.get("method")))
    if rows:
        execute_values(cur, "INSERT INTO consent_event (person_id, store_id, purpose, granted, at, policy_sha256, method) "
                       "VALUES %s", rows, page_size=2000)


def _apply_visits(cur, store: Store, events: list[Event], counted: list[tuple]) -> int:
    """Visits of the store's devices linked to a person; the others are ignored and counted
    (returned). Anonymous data is never received: a store sends no visit of a device linked to
    no one (issue 15), and one that does (an older appliance) leaves no trace of it here.
    `counted` receives (person, start, end) of the visits kept that are not passers-by."""
    if not events:
        return 0
    cur.execute("SELECT mac, id, person_id FROM device WHERE store_id = %s AND mac = ANY(%s) AND person_id IS NOT NULL "
                "FOR KEY SHARE", (store.id, sorted({e.data["device"] for e in events})))  # no FK: central/visits.py
    ids = {mac: (device, person) for mac, device, person in cur.fetchall()}
    lines = []
    for e in events:
        known = ids.get(e.data["device"])
        if known is None:
            continue
        start, end = _plain(e.data["start"]), _plain(e.data["end"])
        passerby = e.data["passerby"]
        lines.append(f"{store.id}\t{known[0]}\t{start}\t{end}\t{'t' if passerby else 'f'}\n")
        if not passerby:
            counted.append((known[1], start, end))
    if lines:
        # COPY: the visits are most of what stores send. Values were validated (ids, times, booleans).
        cur.copy_expert('COPY visit (store_id, device_id, start, "end", passerby) FROM STDIN', io.StringIO("".join(lines)))
    return len(events) - len(lines)


# A naive time as PostgreSQL and datetime.fromisoformat read it alike (validated already): sent on
# as it is. Anything else (an offset, a week date, a "T" with hours only) is normalized first.
_PLAIN_TIME = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d{1,6})?\Z")


def _plain(value: str):
    return value if _PLAIN_TIME.match(value) else event_time(value)


def _apply_segment(cur, store: Store, e: Event) -> None:
    cur.execute("DELETE FROM segment_member WHERE store_id = %s AND segment = %s", (store.id, e.data["segment"]))
    members = e.data["members"]
    if members:
        cur.execute("SELECT DISTINCT person_id FROM store_lead WHERE store_id = %s AND lead_uid = ANY(%s)", (store.id, members))
        execute_values(cur, "INSERT INTO segment_member (store_id, segment, person_id) VALUES %s ON CONFLICT DO NOTHING",
                       [(store.id, e.data["segment"], row[0]) for row in cur.fetchall()], page_size=5000)
