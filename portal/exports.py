"""Audience exports of a segment: CSV for CRMs, Meta Custom Audience, Google Customer Match.

Only people holding the matching marketing consent now are ever exported, and only the
identifiers that consent covers: email with marketing_email, phone with marketing_sms (CSV);
both, hashed, with ad_audiences (Meta, Google). Withdrawn or erased people never appear.
Double opt-in (issue 11): a consent counts only for a contact the person proved with a code, and
only proved contact points are exported; `left_out` says how many consenting people were not.
"""
from __future__ import annotations

from typing import Iterator

from portal.consent import COUNTS_SQL
from portal.core.audience import KINDS, google_phone, meta_phone, normalize_email, sha256
from portal.db import database
from portal.identity import Vault


_CONSENTED = """
SELECT l.id, CASE WHEN l.email_verified_at IS NOT NULL THEN l.email_enc END,
       CASE WHEN l.phone_verified_at IS NOT NULL THEN l.phone_enc END, l.name_enc, l.language, group_concat(c.purpose)
FROM segment_member m
JOIN lead l ON l.id = m.lead_id AND l.erased_at IS NULL
JOIN consent c ON c.lead_id = l.id AND c.granted = 1 AND c.purpose IN ({purposes})
  AND c.id = (SELECT max(id) FROM consent c2 WHERE c2.lead_id = c.lead_id AND c2.purpose = c.purpose)
  AND {counts}
WHERE m.segment_id = ? AND l.restricted_at IS NULL  -- objection/restriction upheld by the privacy desk (issue 15)
GROUP BY l.id ORDER BY l.id
"""

_LEFT_OUT = """
SELECT count(DISTINCT l.id) FROM segment_member m
JOIN lead l ON l.id = m.lead_id AND l.erased_at IS NULL
JOIN consent c ON c.lead_id = l.id AND c.granted = 1 AND c.purpose IN ({purposes})
  AND c.id = (SELECT max(id) FROM consent c2 WHERE c2.lead_id = c.lead_id AND c2.purpose = c.purpose)
WHERE m.segment_id = ? AND NOT EXISTS (
  SELECT 1 FROM consent c WHERE c.lead_id = l.id AND c.granted = 1 AND c.purpose IN ({purposes})
  AND c.id = (SELECT max(id) FROM consent c2 WHERE c2.lead_id = c.lead_id AND c2.purpose = c.purpose) AND {counts})
"""


def _purposes(kind: str) -> tuple[str, ...]:
    return ("marketing_email", "marketing_sms") if kind == "csv" else ("ad_audiences",)


def _consented(segment_id: int, purposes: tuple[str, ...]):
    marks = ",".join("?" * len(purposes))
    return database.execute_sql(_CONSENTED.format(purposes=marks, counts=COUNTS_SQL), (*purposes, segment_id))


def left_out(segment_id: int, kind: str) -> int:
    """Members who consented to this export's purpose but proved no contact it could use."""
    if kind not in KINDS:
        raise ValueError(f"unknown export {kind!r}")
    purposes = _purposes(kind)
    marks = ",".join("?" * len(purposes))
    return database.execute_sql(_LEFT_OUT.format(purposes=marks, counts=COUNTS_SQL),
                                (*purposes, segment_id, *purposes)).fetchone()[0]


def export_rows(segment_id: int, kind: str, vault: Vault) -> Iterator[list[str]]:
    """Header, then one row per consenting person."""
    if kind not in KINDS:
        raise ValueError(f"unknown export {kind!r}")
    if kind == "csv":
        yield ["email", "phone", "name", "language"]
        for _, email_enc, phone_enc, name_enc, language, granted in _consented(segment_id, _purposes(kind)):
            purposes = set(granted.split(","))
            email = vault.decrypt(email_enc, "lead.email") if "marketing_email" in purposes else None
            phone = vault.decrypt(phone_enc, "lead.phone") if "marketing_sms" in purposes else None
            if email or phone:
                yield [email or "", phone or "", vault.decrypt(name_enc, "lead.name") or "", language]
        return
    yield ["email", "phone"] if kind == "meta" else ["Email", "Phone"]
    to_phone = meta_phone if kind == "meta" else google_phone
    for _, email_enc, phone_enc, _name, _lang, _granted in _consented(segment_id, _purposes(kind)):
        email = vault.decrypt(email_enc, "lead.email")
        phone = vault.decrypt(phone_enc, "lead.phone")
        if email or phone:
            yield [sha256(normalize_email(email)) if email else "", sha256(to_phone(phone)) if phone else ""]
