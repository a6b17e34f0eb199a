"""Audience exports of a segment: CSV for CRMs, Meta Custom Audience, Google Customer Match.

Only people holding the matching marketing consent now are ever exported, and only the
identifiers that consent covers: email with marketing_email, phone with marketing_sms (CSV);
both, hashed, with ad_audiences (Meta, Google). Withdrawn or erased people never appear.
Double opt-in (issue 11): a consent counts only for a contact the person proved with a code, and
only proved contact points are exported; `left_out` says how many consenting people were not.
"""
from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Iterable, Iterator

from portal import name_index
from portal.consent import COUNTS_SQL, VALID_SQL
from portal.core.audience import HEADERS, KINDS, hashed_row, sha256, to_csv  # noqa: F401  (sha256: re-exported)
from portal.db import database
from portal.identity import Vault
from portal.models import AuditLog, ExportLog, ExportMember, Lead, Segment
from portal.visits import FOLLOWED_PEOPLE_SQL


_CONSENTED = """
SELECT l.id, CASE WHEN l.email_verified_at IS NOT NULL THEN l.email_enc END,
       CASE WHEN l.phone_verified_at IS NOT NULL THEN l.phone_enc END, l.name_enc, l.language, group_concat(c.purpose)
FROM segment_member m
JOIN lead l ON l.id = m.lead_id AND l.erased_at IS NULL
JOIN consent c ON c.lead_id = l.id AND c.granted = 1 AND c.purpose IN ({purposes})
  AND c.id = (SELECT max(id) FROM consent c2 WHERE c2.lead_id = c.lead_id AND c2.purpose = c.purpose)
  AND {counts}
WHERE m.segment_id = ? AND l.restricted_at IS NULL  -- objection/restriction upheld by the privacy desk (issue 15)
  AND l.id IN ({followed})  -- segments are visit analytics: a member who withdrew or lapsed since the last run is out
GROUP BY l.id ORDER BY l.id
"""

_LEFT_OUT = """
SELECT count(DISTINCT l.id) FROM segment_member m
JOIN lead l ON l.id = m.lead_id AND l.erased_at IS NULL
JOIN consent c ON c.lead_id = l.id AND c.granted = 1 AND c.purpose IN ({purposes})
  AND c.id = (SELECT max(id) FROM consent c2 WHERE c2.lead_id = c.lead_id AND c2.purpose = c.purpose)
  AND {valid}  -- a consent on a text since changed materially is not "left out": it awaits a new answer
WHERE m.segment_id = ? AND NOT EXISTS (
  SELECT 1 FROM consent c WHERE c.lead_id = l.id AND c.granted = 1 AND c.purpose IN ({purposes})
  AND c.id = (SELECT max(id) FROM consent c2 WHERE c2.lead_id = c.lead_id AND c2.purpose = c.purpose) AND {counts})
"""


# Excel reads a CSV without a byte-order mark in the machine's legacy code page: "Nguyễn" would
# show as "Nguyá»…n". The CRM file (names, in Vietnamese) starts with one; Meta's and Google's
# files hold only hex digests and their uploaders want the header as the first bytes.
BOM = "\ufeff"


def file_name(segment_name: str, kind: str, day: datetime.date) -> str:
    """`loyal-meta-2026-11-25.csv`: the segment's name in ASCII (slugified), the kind, the day."""
    slug = "-".join(name_index.ascii_words(segment_name))[:48].strip("-") or "segment"
    return f"{slug}-{kind}-{day:%Y-%m-%d}.csv"


def csv_text(rows: Iterable[list[str]], kind: str) -> Iterator[str]:
    """The export as CSV text (formula-neutralised cells), behind a BOM for the CRM file."""
    if kind == "csv":
        yield BOM
    yield from to_csv(rows)


def _purposes(kind: str) -> tuple[str, ...]:
    return ("marketing_email", "marketing_sms") if kind == "csv" else ("ad_audiences",)


def _consented(segment_id: int, purposes: tuple[str, ...]):
    marks = ",".join("?" * len(purposes))
    return database.execute_sql(_CONSENTED.format(purposes=marks, counts=COUNTS_SQL, followed=FOLLOWED_PEOPLE_SQL), (*purposes, segment_id))


def left_out(segment_id: int, kind: str) -> int:
    """Members who consented to this export's purpose but proved no contact it could use."""
    if kind not in KINDS:
        raise ValueError(f"unknown export {kind!r}")
    purposes = _purposes(kind)
    marks = ",".join("?" * len(purposes))
    return database.execute_sql(_LEFT_OUT.format(purposes=marks, counts=COUNTS_SQL, valid=VALID_SQL),
                                (*purposes, segment_id, *purposes)).fetchone()[0]


def export_rows(segment_id: int, kind: str, vault: Vault) -> Iterator[list[str]]:
    """Header, then one row per consenting person."""
    if kind not in KINDS:
        raise ValueError(f"unknown export {kind!r}")
    yield list(HEADERS[kind])
    for _lead_id, row, _email, _phone in _member_rows(segment_id, kind, vault):
        yield row


def _member_rows(segment_id: int, kind: str, vault: Vault) -> Iterator[tuple[int, list[str], str | None, str | None]]:
    """Per consenting person: their lead id, their row, and the email and phone the row carries."""
    if kind == "csv":
        for lead_id, email_enc, phone_enc, name_enc, language, granted in _consented(segment_id, _purposes(kind)):
            purposes = set(granted.split(","))
            email = vault.decrypt(email_enc, "lead.email") if "marketing_email" in purposes else None
            phone = vault.decrypt(phone_enc, "lead.phone") if "marketing_sms" in purposes else None
            if email or phone:
                yield lead_id, [email or "", phone or "", vault.decrypt(name_enc, "lead.name") or "", language], email, phone
        return
    for lead_id, email_enc, phone_enc, _name, _lang, _granted in _consented(segment_id, _purposes(kind)):
        email = vault.decrypt(email_enc, "lead.email")
        phone = vault.decrypt(phone_enc, "lead.phone")
        if email or phone:
            yield lead_id, hashed_row(kind, email, phone), email, phone


# -- the export log and removal lists (issue 15) ---------------------------------------------------
#
# Every export records who made it, of which segment, for which platform, when, and which people,
# with the version (policy sha256) of each consent it rested on. For each person it keeps only the
# SHA-256 of the identifiers it sent, normalized as the platform wants them (csv: the email
# lowercased, the phone in E.164, as Google's): when the person withdraws that consent or is erased,
# the panel lists them for removal from that platform, and an erased person's entry holds no
# plaintext. A hash is cleared once the owner marks its removal done.

# Which consent covers each identifier an export sends.
COVERS = {"csv": {"email": "marketing_email", "phone": "marketing_sms"},
          "meta": {"email": "ad_audiences", "phone": "ad_audiences"},
          "google": {"email": "ad_audiences", "phone": "ad_audiences"}}
REMOVAL_HEADERS = {"csv": ("email", "phone", "email_sha256", "phone_sha256"), "meta": HEADERS["meta"],
                   "google": HEADERS["google"]}


def identifier_hashes(kind: str, email: str | None, phone: str | None) -> tuple[str | None, str | None]:
    """The SHA-256 of each identifier as `kind` normalizes it (csv: as Google does)."""
    email_hash, phone_hash = hashed_row("meta" if kind == "meta" else "google", email, phone)
    return email_hash or None, phone_hash or None


def _latest_policies(segment_id: int, purposes: tuple[str, ...]) -> dict[int, dict[str, str | None]]:
    marks = ",".join("?" * len(purposes))
    out: dict[int, dict[str, str | None]] = {}
    for lead_id, purpose, sha in database.execute_sql(
            f"SELECT c.lead_id, c.purpose, c.policy_sha256 FROM consent c JOIN segment_member m ON m.lead_id = c.lead_id "
            f"WHERE m.segment_id = ? AND c.purpose IN ({marks}) "
            "AND c.id = (SELECT max(id) FROM consent c2 WHERE c2.lead_id = c.lead_id AND c2.purpose = c.purpose)",
            (segment_id, *purposes)):
        out.setdefault(lead_id, {})[purpose] = sha
    return out


def logged_export(segment: Segment, kind: str, vault: Vault, actor: str) -> tuple[ExportLog, list[list[str]]]:
    """The export's rows, and its record in the export log, written before anything is sent."""
    if kind not in KINDS:
        raise ValueError(f"unknown export {kind!r}")
    people = list(_member_rows(segment.id, kind, vault))
    policies = _latest_policies(segment.id, _purposes(kind))
    covers = COVERS[kind]
    with database.atomic():
        log = ExportLog.create(actor=actor, segment_key=segment.key, segment_name=segment.name, kind=kind,
                               members=len(people))
        rows = []
        for lead_id, _row, email, phone in people:
            email_hash, phone_hash = identifier_hashes(kind, email, phone)
            used = {covers[k] for k, v in (("email", email), ("phone", phone)) if v}
            rows.append({"export": log.id, "lead": lead_id, "email_hash": email_hash, "phone_hash": phone_hash,
                         "policies": json.dumps({p: policies.get(lead_id, {}).get(p) for p in sorted(used)})})
        for start in range(0, len(rows), 500):
            ExportMember.insert_many(rows[start:start + 500]).execute()
    return log, [list(HEADERS[kind]), *(row for _, row, _, _ in people)]


@dataclass(frozen=True)
class Removal:
    """One exported identifier set to remove from a platform, and since when it is due."""
    member_ids: tuple[int, ...]
    email_hash: str | None
    phone_hash: str | None
    lead_id: int
    since: datetime.datetime


def _counting_consents(lead_ids: list[int]) -> dict[int, dict[str, tuple[bool, datetime.datetime]]]:
    """Per lead and purpose: whether the latest choice is a grant that counts now, and its time."""
    out: dict[int, dict[str, tuple[bool, datetime.datetime]]] = {}
    for start in range(0, len(lead_ids), 500):
        chunk = lead_ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for lead_id, purpose, counts, at in database.execute_sql(
                f"SELECT c.lead_id, c.purpose, c.granted = 1 AND {COUNTS_SQL}, c.created_at FROM consent c "
                f"JOIN lead l ON l.id = c.lead_id WHERE c.lead_id IN ({marks}) "
                "AND c.id = (SELECT max(id) FROM consent c2 WHERE c2.lead_id = c.lead_id AND c2.purpose = c.purpose)",
                chunk):
            out.setdefault(lead_id, {})[purpose] = (bool(counts), _as_time(at))
    return out


def _as_time(value) -> datetime.datetime:
    return value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(str(value))


def removals(kind: str, vault: Vault, as_of: datetime.datetime | None = None) -> list[Removal]:
    """What must go from `kind`'s platform: each identifier sent there whose consent no longer
    counts (withdrawn, or its contact no longer verified), whose person no longer holds it, or
    whose person was erased or restricted (issue 15); due since at most `as_of`. One entry per distinct identifier set."""
    if kind not in KINDS:
        raise ValueError(f"unknown export {kind!r}")
    members = list(ExportMember.select(ExportMember, Lead).join(ExportLog).switch(ExportMember).join(Lead)
                   .where((ExportLog.kind == kind)
                          & (ExportMember.email_hash.is_null(False) | ExportMember.phone_hash.is_null(False)))
                   .order_by(ExportMember.id))
    consents = _counting_consents(sorted({m.lead_id for m in members}))
    held: dict[int, tuple[str | None, str | None]] = {}
    due: dict[tuple[str | None, str | None], Removal] = {}
    for m in members:
        lead = m.lead
        if lead.id not in held and lead.erased_at is None:
            held[lead.id] = identifier_hashes(kind, vault.decrypt(lead.email_enc, "lead.email"),
                                              vault.decrypt(lead.phone_enc, "lead.phone"))
        out = {}
        for i, k in enumerate(("email", "phone")):
            sent = (m.email_hash, m.phone_hash)[i]
            if sent is None:
                continue
            if lead.erased_at is not None:
                out[k] = (sent, _as_time(lead.erased_at))
                continue
            if lead.restricted_at is not None:  # an objection or a restriction upheld: off every platform too
                out[k] = (sent, _as_time(lead.restricted_at))
                continue
            counts, at = consents.get(lead.id, {}).get(COVERS[kind][k], (False, _as_time(lead.updated_at)))
            if not counts:
                out[k] = (sent, at if at is not None else _as_time(lead.updated_at))
            elif held[lead.id][i] != sent:  # corrected since: the old contact is no longer theirs
                out[k] = (sent, _as_time(lead.updated_at))
        out = {k: v for k, v in out.items() if as_of is None or v[1] <= as_of}
        if not out:
            continue
        key = (out.get("email", (None,))[0], out.get("phone", (None,))[0])
        since = min(v[1] for v in out.values())
        prior = due.get(key)
        due[key] = Removal((*(prior.member_ids if prior else ()), m.id), *key, lead.id,
                           min(since, prior.since) if prior else since)
    return list(due.values())


def removal_rows(kind: str, vault: Vault, as_of: datetime.datetime | None = None) -> Iterator[list[str]]:
    """The removal list as the platform takes it (hashed), for csv with the plaintext only of a
    person not erased who still holds that contact."""
    yield list(REMOVAL_HEADERS[kind])
    for r in removals(kind, vault, as_of):
        if kind != "csv":
            yield [r.email_hash or "", r.phone_hash or ""]
            continue
        lead = Lead.get_by_id(r.lead_id)
        email = phone = ""
        if lead.erased_at is None:
            plain_email = vault.decrypt(lead.email_enc, "lead.email")
            plain_phone = vault.decrypt(lead.phone_enc, "lead.phone")
            held = identifier_hashes(kind, plain_email, plain_phone)
            email = plain_email if r.email_hash and held[0] == r.email_hash else ""
            phone = plain_phone if r.phone_hash and held[1] == r.phone_hash else ""
        yield [email, phone, r.email_hash or "", r.phone_hash or ""]


def mark_removed(kind: str, vault: Vault, as_of: datetime.datetime, actor: str) -> int:
    """The owner removed the list (as of `as_of`) from the platform: those hashes are cleared."""
    entries = removals(kind, vault, as_of)
    with database.atomic():
        for r in entries:
            for field, value in (("email_hash", r.email_hash), ("phone_hash", r.phone_hash)):
                if value is not None:
                    column = getattr(ExportMember, field)
                    ExportMember.update({column: None}).where(ExportMember.id.in_(r.member_ids) & (column == value)).execute()
        AuditLog.record(actor, "removal_done", kind, entries=len(entries), as_of=as_of.isoformat(" "))
    return len(entries)
