"""Audience exports of a segment: CSV for CRMs, Meta Custom Audience, Google Customer Match.

Only people holding the matching marketing consent now are ever exported, and only the
identifiers that consent covers: email with marketing_email, phone with marketing_sms (CSV);
both, hashed, with ad_audiences (Meta, Google). Withdrawn or erased people never appear.
"""
from __future__ import annotations

from typing import Iterator

from portal.core.audience import KINDS, google_phone, meta_phone, normalize_email, sha256
from portal.db import database
from portal.identity import Vault


_CONSENTED = """
SELECT l.id, l.email_enc, l.phone_enc, l.name_enc, l.language, group_concat(c.purpose)
FROM segment_member m
JOIN lead l ON l.id = m.lead_id AND l.erased_at IS NULL
JOIN consent c ON c.lead_id = l.id AND c.granted = 1 AND c.purpose IN ({purposes})
  AND c.id = (SELECT max(id) FROM consent c2 WHERE c2.lead_id = c.lead_id AND c2.purpose = c.purpose)
WHERE m.segment_id = ?
GROUP BY l.id ORDER BY l.id
"""


def _consented(segment_id: int, purposes: tuple[str, ...]):
    marks = ",".join("?" * len(purposes))
    return database.execute_sql(_CONSENTED.format(purposes=marks), (*purposes, segment_id))


def export_rows(segment_id: int, kind: str, vault: Vault) -> Iterator[list[str]]:
    """Header, then one row per consenting person."""
    if kind not in KINDS:
        raise ValueError(f"unknown export {kind!r}")
    if kind == "csv":
        yield ["email", "phone", "name", "language"]
        for _, email_enc, phone_enc, name_enc, language, granted in _consented(segment_id, ("marketing_email", "marketing_sms")):
            purposes = set(granted.split(","))
            email = vault.decrypt(email_enc, "lead.email") if "marketing_email" in purposes else None
            phone = vault.decrypt(phone_enc, "lead.phone") if "marketing_sms" in purposes else None
            if email or phone:
                yield [email or "", phone or "", vault.decrypt(name_enc, "lead.name") or "", language]
        return
    yield ["email", "phone"] if kind == "meta" else ["Email", "Phone"]
    to_phone = meta_phone if kind == "meta" else google_phone
    for _, email_enc, phone_enc, _name, _lang, _granted in _consented(segment_id, ("ad_audiences",)):
        email = vault.decrypt(email_enc, "lead.email")
        phone = vault.decrypt(phone_enc, "lead.phone")
        if email or phone:
            yield [sha256(normalize_email(email)) if email else "", sha256(to_phone(phone)) if phone else ""]
