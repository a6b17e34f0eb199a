"""A person at the central store: found and merged only by verified blind indexes, folded when a
store folds its records, erased chain-wide only on the word of a store where they are verified.

A store's sign-in form is a claim; a contact is proved by a one-time code (issue 11). So an index
counts here only when its event says `<kind>_verified: true`, and a person holds an index only with
its `<kind>_verified_at`: a store that names alice's email without proof gets a person of its own.
Merging across stores is a purpose of its own (issue 15): a lead whose event does not say
`chain_sharing: true` is kept apart, a person of its store alone that holds its proved contacts
without their index (nobody finds it by them); its withdrawal takes the store's part out again.
Every function takes the batch's cursor (one transaction) and `known`, the batch's cache of
lead uid > person id for the pushing store, which it keeps true.
"""
from __future__ import annotations

import datetime

from central.models import utcnow
from central.visits import forget_devices
from portal.core.purposes import VISIT_ANALYTICS
from portal.identity import Vault

KINDS = ("email", "phone")
# Double opt-in: a marketing consent counts only with the channel it reaches verified.
CHANNELS = {"marketing_email": ("email",), "marketing_sms": ("phone",), "ad_audiences": ("email", "phone")}

# Issue 15, SQL over a person `p`. A store that upheld an objection or a restriction for its lead
# of the person keeps them out of chain segments, exports and the people API until it lifts it.
UNRESTRICTED = "NOT EXISTS (SELECT 1 FROM store_lead r WHERE r.person_id = p.id AND r.restricted_at IS NOT NULL)"
# Chain segments follow a person's visits only when their latest visit_analytics choice is a grant.
FOLLOWED = ("EXISTS (SELECT 1 FROM (SELECT c.granted FROM consent_event c WHERE c.person_id = p.id "
            f"AND c.purpose = '{VISIT_ANALYTICS}' ORDER BY c.at DESC, c.id DESC LIMIT 1) l WHERE l.granted)")


def person_of(cur, store_id: str, lead_uid: str, known: dict[str, int]) -> int | None:
    if lead_uid in known:
        return known[lead_uid]
    cur.execute("SELECT person_id FROM store_lead WHERE store_id = %s AND lead_uid = %s", (store_id, lead_uid))
    row = cur.fetchone()
    if row:
        known[lead_uid] = row[0]
    return row[0] if row else None


def proven(data: dict) -> tuple[str, ...]:
    """The kinds of contact the event proves: the flag exactly true, with the contact and its index."""
    return tuple(k for k in KINDS if data.get(f"{k}_verified") is True and data.get(k) and data.get(f"{k}_index"))


def lock_indexes(cur, events: list[dict]) -> None:
    """Serialize the batches that could merge on the same verified contact: two stores proving one
    new person at once would otherwise both create them and one would hit the unique index.
    Transaction-scoped advisory locks, taken all at once in one order (no deadlock between batches)."""
    keys = sorted({int(d[f"{kind}_index"][:15], 16) for d in events for kind in proven(d)})
    if keys:  # one statement (in that order), not one per key
        cur.execute("SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT k FROM unnest(%s::bigint[]) k ORDER BY k) s",
                    (keys,))


def _holder(cur, kind: str, index: str) -> int | None:
    cur.execute(f"SELECT id FROM person WHERE {kind}_index = %s AND {kind}_verified_at IS NOT NULL "
                "AND erased_at IS NULL", (index,))
    row = cur.fetchone()
    return row[0] if row else None


def _is_claim(cur, person: int) -> bool:
    """A live person no store has proved anything of."""
    cur.execute("SELECT email_verified_at IS NULL AND phone_verified_at IS NULL AND erased_at IS NULL "
                "FROM person WHERE id = %s", (person,))
    row = cur.fetchone()
    return bool(row and row[0])


def _is_private(cur, person: int) -> bool:
    """A person kept apart: a proved contact held without its index (only a lead not shared does that)."""
    cur.execute("SELECT (email_verified_at IS NOT NULL AND email_index IS NULL) OR "
                "(phone_verified_at IS NOT NULL AND phone_index IS NULL) FROM person WHERE id = %s", (person,))
    row = cur.fetchone()
    return bool(row and row[0])


def _shared(cur, person: int, store_id: str) -> bool:
    cur.execute("SELECT EXISTS (SELECT 1 FROM store_lead WHERE person_id = %s AND store_id <> %s)", (person, store_id))
    return cur.fetchone()[0]


def _split(cur, store_id: str, person: int, known: dict[str, int]) -> int:
    """This store's part of a person other stores know too, as a person of its own."""
    part = _new_person(cur)
    cur.execute("UPDATE store_lead SET person_id = %s WHERE person_id = %s AND store_id = %s", (part, person, store_id))
    _move(cur, person, part, store_id)
    for uid, p in known.items():
        if p == person:
            known[uid] = part
    return part


def _new_person(cur, language: str = "vi") -> int:
    cur.execute("INSERT INTO person (language, created_at, updated_at) VALUES (%s, %s, %s) RETURNING id",
                (language, utcnow(), utcnow()))
    return cur.fetchone()[0]


def _map(cur, store_id: str, lead_uid: str, person: int, known: dict[str, int], verified: bool = False) -> None:
    cur.execute("INSERT INTO store_lead (store_id, lead_uid, person_id, verified_at) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (store_id, lead_uid) DO UPDATE SET person_id = excluded.person_id, "
                "verified_at = COALESCE(store_lead.verified_at, excluded.verified_at)",
                (store_id, lead_uid, person, utcnow() if verified else None))
    known[lead_uid] = person


def upsert_lead(cur, store_id: str, d: dict, at: datetime.datetime, vault: Vault, known: dict[str, int]) -> int | None:
    """A store's lead, as it is now. Merged into the person holding one of its verified contacts
    when it shares with the chain: at once when the lead is new here, and when it was so far a
    claim or kept apart (the store has since proved it, or the person agreed); a contact held by
    another verified person stays with them. Not sharing: a person of the store alone (split off
    when it was merged). None for a person erased here already (the store has a command to erase
    them too)."""
    kinds = proven(d)
    sharing = d.get("chain_sharing") is True
    current = person_of(cur, store_id, d["lead"], known)
    restricted = None  # a restriction the store upheld outlives the central's purge of the person
    if current is not None:
        cur.execute("SELECT erased_at IS NOT NULL, purged_at IS NOT NULL FROM person WHERE id = %s", (current,))
        erased, purged = cur.fetchone()
        if purged:  # gone here by retention, still a lead at the store: they came back, a person anew
            cur.execute("DELETE FROM store_lead WHERE store_id = %s AND lead_uid = %s RETURNING restricted_at",
                        (store_id, d["lead"]))
            restricted = cur.fetchone()[0]
            known.pop(d["lead"], None)
            current = None
        elif erased:
            return None
    target = None
    for kind in kinds if sharing else ():
        target = target or _holder(cur, kind, d[f"{kind}_index"])
    if current is None:
        person = target or _new_person(cur, d["language"])
    elif target is not None and target != current and (_is_claim(cur, current) or _is_private(cur, current)):
        person = target  # the store proved its claim: the claim's records there (merged ones too) follow
        cur.execute("UPDATE store_lead SET person_id = %s WHERE store_id = %s AND person_id = %s", (target, store_id, current))
        for uid, p in known.items():
            if p == current:
                known[uid] = target
        fold(cur, store_id, current, target, known)
    elif not sharing and _shared(cur, current, store_id):
        person = _split(cur, store_id, current, known)  # the person withdrew chain sharing
    else:
        person = current
    holds = False
    for kind in kinds:
        index = d[f"{kind}_index"]
        if not sharing:  # kept apart: the contact and its proof, never the index other stores merge by
            cur.execute(f"UPDATE person SET {kind}_index = NULL, {kind}_verified_at = COALESCE({kind}_verified_at, %s), "
                        f"{kind}_enc = %s WHERE id = %s", (at, vault.encrypt(d[kind], f"person.{kind}"), person))
            holds = True
            continue
        cur.execute(f"SELECT id, {kind}_verified_at IS NOT NULL FROM person WHERE {kind}_index = %s AND id <> %s",
                    (index, person))
        other = cur.fetchone()
        if other is not None and other[1]:
            continue  # held by another verified person: leave it with them
        if other is not None:  # an unproved index from before verification existed gives way to a proof
            cur.execute(f"UPDATE person SET {kind}_index = NULL WHERE id = %s", (other[0],))
        cur.execute(f"UPDATE person SET {kind}_verified_at = CASE WHEN {kind}_index = %s AND {kind}_verified_at "
                    f"IS NOT NULL THEN {kind}_verified_at ELSE %s END, {kind}_index = %s, {kind}_enc = %s WHERE id = %s",
                    (index, at, index, vault.encrypt(d[kind], f"person.{kind}"), person))
        holds = True
    if d.get("name"):
        cur.execute("UPDATE person SET name_enc = %s WHERE id = %s", (vault.encrypt(d["name"], "person.name"), person))
    cur.execute("UPDATE person SET language = %s, updated_at = %s WHERE id = %s", (d["language"], utcnow(), person))
    _map(cur, store_id, d["lead"], person, known, verified=holds)
    if restricted is not None:
        cur.execute("UPDATE store_lead SET restricted_at = %s WHERE store_id = %s AND lead_uid = %s",
                    (restricted, store_id, d["lead"]))
    return person


def restrict_lead(cur, store_id: str, lead_uid: str, restricted: bool, at: datetime.datetime,
                  known: dict[str, int]) -> bool:
    """A store upheld (or lifted) an objection or a restriction for its lead. The mark is on the
    store's lead, so it follows the person through merges and folds, and only that store lifts it.
    False when the lead is unknown here."""
    if person_of(cur, store_id, lead_uid, known) is None:
        return False
    if restricted:
        cur.execute("UPDATE store_lead SET restricted_at = COALESCE(restricted_at, %s) WHERE store_id = %s AND lead_uid = %s",
                    (at, store_id, lead_uid))
        cur.execute("DELETE FROM segment_member WHERE store_id = %s AND person_id = %s", (store_id, known[lead_uid]))
    else:
        cur.execute("UPDATE store_lead SET restricted_at = NULL WHERE store_id = %s AND lead_uid = %s", (store_id, lead_uid))
    return True


def is_restricted(cur, person: int) -> bool:
    cur.execute(f"SELECT NOT {UNRESTRICTED} FROM person p WHERE p.id = %s", (person,))
    row = cur.fetchone()
    return bool(row and row[0])


def merge(cur, store_id: str, lead_uid: str, into_uid: str, known: dict[str, int]) -> None:
    """The store folded record `lead` into record `into`: `lead` is `into`'s person from now on.
    `into` not seen yet gets its person now; its lead.upserted fills it in when it comes."""
    new = person_of(cur, store_id, into_uid, known)
    old = person_of(cur, store_id, lead_uid, known)
    if new is None:
        new = _new_person(cur)
        _map(cur, store_id, into_uid, new, known)
    if old == new:
        return
    _map(cur, store_id, lead_uid, new, known)
    if old is not None:
        fold(cur, store_id, old, new, known)


def _move(cur, old: int, new: int, store_id: str | None) -> None:
    """The consent log, devices and segment memberships of `old` (of one store, or all) to `new`."""
    where, args = ("person_id = %s AND store_id = %s", (old, store_id)) if store_id else ("person_id = %s", (old,))
    cur.execute(f"UPDATE consent_event SET person_id = %s WHERE {where}", (new, *args))
    cur.execute(f"UPDATE device SET person_id = %s WHERE {where}", (new, *args))
    cur.execute(f"INSERT INTO segment_member (store_id, segment, person_id) SELECT store_id, segment, %s "
                f"FROM segment_member WHERE {where} ON CONFLICT DO NOTHING", (new, *args))
    cur.execute(f"DELETE FROM segment_member WHERE {where}", args)


def fold(cur, store_id: str, old: int, new: int, known: dict[str, int]) -> None:
    """After a lead of `store_id` moved from `old` to `new`: what that store knew of `old` follows
    it when `old` has no other lead there; `old` with no lead anywhere is folded whole and deleted
    (its verified contacts go to `new` when `new` has none of that kind). An erased person's log stays."""
    if old == new:
        return
    cur.execute("SELECT erased_at IS NOT NULL FROM person WHERE id = %s", (old,))
    row = cur.fetchone()
    if row is None or row[0]:
        return
    cur.execute("SELECT count(*) FILTER (WHERE store_id = %s), count(*) FROM store_lead WHERE person_id = %s",
                (store_id, old))
    here, anywhere = cur.fetchone()
    if anywhere:
        if not here:
            _move(cur, old, new, store_id)
        return
    _move(cur, old, new, None)
    for kind in KINDS:
        cur.execute(f"SELECT o.{kind}_index, o.{kind}_enc, o.{kind}_verified_at FROM person o, person n "
                    f"WHERE o.id = %s AND n.id = %s AND o.{kind}_verified_at IS NOT NULL AND n.{kind}_index IS NULL",
                    (old, new))
        row = cur.fetchone()
        if row:
            cur.execute(f"UPDATE person SET {kind}_index = NULL WHERE id = %s", (old,))
            cur.execute(f"UPDATE person SET {kind}_index = %s, {kind}_enc = %s, {kind}_verified_at = %s WHERE id = %s",
                        (*row, new))
    cur.execute("DELETE FROM person WHERE id = %s", (old,))
    for uid, person in known.items():
        if person == old:
            known[uid] = new


def erase_lead(cur, store_id: str, lead_uid: str, verified: bool, known: dict[str, int]) -> list[str]:
    """A store's erasure. Chain-wide only when the store says the lead is verified (`verified` is
    exactly true) and it did prove a contact of that person here; otherwise only that store's part
    goes: its leads of the person, their devices, visits and segment memberships (the consent
    log stays, as proof, on an erased person of its own), and the person with it when no other
    store knows them. Returns the stores told to erase."""
    person = person_of(cur, store_id, lead_uid, known)
    if person is None:
        return []
    cur.execute("SELECT s.verified_at IS NOT NULL, p.erased_at IS NOT NULL FROM store_lead s JOIN person p "
                "ON p.id = s.person_id WHERE s.store_id = %s AND s.lead_uid = %s", (store_id, lead_uid))
    proved_here, erased = cur.fetchone()
    if erased:
        return []
    if verified is True and proved_here:
        return erase_person(cur, person, origin=store_id)
    cur.execute("SELECT count(*) FROM store_lead WHERE person_id = %s AND store_id <> %s", (person, store_id))
    if cur.fetchone()[0] == 0:
        return erase_person(cur, person, origin=store_id)  # nobody else knows them: nobody is told
    part = _new_person(cur)
    cur.execute("UPDATE store_lead SET person_id = %s WHERE person_id = %s AND store_id = %s", (part, person, store_id))
    _move(cur, person, part, store_id)
    for uid, p in known.items():
        if p == person:
            known[uid] = part
    return erase_person(cur, part, origin=store_id)


def erase_person(cur, person: int, origin: str | None) -> list[str]:
    """Erase a person from the chain: their details, devices and visits in every store, their
    segment memberships; the consent log stays as proof. Every store that knew them (but the
    one it came from) gets a command to erase them too. Returns the stores told."""
    cur.execute("SELECT erased_at FROM person WHERE id = %s", (person,))
    row = cur.fetchone()
    if row is None or row[0] is not None:
        return []  # already erased: its commands went out then
    cur.execute("UPDATE person SET email_index = NULL, phone_index = NULL, email_enc = NULL, phone_enc = NULL, "
                "name_enc = NULL, email_verified_at = NULL, phone_verified_at = NULL, erased_at = %s, updated_at = %s "
                "WHERE id = %s", (utcnow(), utcnow(), person))
    forget_devices(cur, "person_id = %s", (person,))  # and their visits (no cascade: central/visits.py)
    cur.execute("DELETE FROM segment_member WHERE person_id = %s", (person,))
    _leave_chain_segments(cur, person)
    cur.execute("SELECT store_id, lead_uid FROM store_lead WHERE person_id = %s", (person,))
    told = []
    for store_id, lead_uid in cur.fetchall():
        if store_id != origin:
            cur.execute("INSERT INTO erase_command (store_id, lead_uid, created_at) VALUES (%s, %s, %s)",
                        (store_id, lead_uid, utcnow()))
            told.append(store_id)
    return told


def _leave_chain_segments(cur, person: int) -> None:
    """An erased or purged person's chain segment row goes in the same transaction (under the row's
    lock, so a batch of another store refreshing them at once cannot put it back)."""
    from central import chainstat  # it builds on this module
    chainstat.refresh(cur, [person])


def counted(consents: dict[str, bool], channels: set[str] | frozenset[str]) -> tuple[dict[str, bool], list[str]]:
    """Double opt-in: the consents that count given the person's verified channels, and the purposes
    granted that do not count for lack of a verified channel."""
    counts, waiting = {}, []
    for purpose, granted in consents.items():
        needs = CHANNELS.get(purpose)
        if granted and needs and not channels.intersection(needs):
            waiting.append(purpose)
        else:
            counts[purpose] = granted
    return counts, sorted(waiting)


# -- retention -------------------------------------------------------------------------------------

# A person is seen when a store sends their lead (a sign-in, a change), a consent choice or a visit.
_STALE = """
SELECT p.id FROM person p
WHERE p.erased_at IS NULL AND p.updated_at < %(cutoff)s
  AND NOT EXISTS (SELECT 1 FROM device d JOIN visit v ON v.device_id = d.id WHERE d.person_id = p.id AND v."end" >= %(cutoff)s)
  AND NOT EXISTS (SELECT 1 FROM consent_event c WHERE c.person_id = p.id AND c.at >= %(cutoff)s)
ORDER BY p.id
"""


def stale_people(cur, retention_days: int, now: datetime.datetime) -> list[int]:
    cur.execute(_STALE, {"cutoff": now - datetime.timedelta(days=retention_days)})
    return [row[0] for row in cur.fetchall()]


def purge_person(cur, person: int, now: datetime.datetime) -> None:
    """Retention, mirroring the appliance's purge: details, devices (their visits with them) and
    segment memberships go; the consent log stays as proof, and so do the person's store leads,
    so a store's later word about one of them finds this record (and starts a person anew, see
    upsert_lead). No store is told to erase: each store keeps its own retention, and it may have
    seen the person in ways the central never hears of (visits of people who did not agree to
    visit analytics are not sent)."""
    cur.execute("UPDATE person SET email_index = NULL, phone_index = NULL, email_enc = NULL, phone_enc = NULL, "
                "name_enc = NULL, email_verified_at = NULL, phone_verified_at = NULL, erased_at = %s, purged_at = %s, "
                "updated_at = %s WHERE id = %s AND erased_at IS NULL", (now, now, now, person))
    forget_devices(cur, "person_id = %s", (person,))  # and their visits (no cascade: central/visits.py)
    cur.execute("DELETE FROM segment_member WHERE person_id = %s", (person,))
    _leave_chain_segments(cur, person)
