"""Policy versions and the append-only consent log."""
from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass

from peewee import fn

from portal import clock
from portal.models import Consent, Lead, OutboxEvent, PolicyVersion
from portal.core.purposes import CHAIN_SHARING, LANGUAGES, VISIT_ANALYTICS
from portal.policy_texts import DEFAULTS, DOCUMENTS, FORMER_DEFAULTS, PURPOSES, REQUIRED_PURPOSE


@dataclass(frozen=True)
class Where:
    """Where a consent event happened: recorded with it as proof."""
    store_id: str
    mac: str | None
    ip: str | None
    method: str


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def current(document: str, language: str) -> PolicyVersion | None:
    return (PolicyVersion.select()
            .where((PolicyVersion.document == document) & (PolicyVersion.language == language))
            .order_by(PolicyVersion.id.desc()).first())


def publish(document: str, language: str, text: str) -> PolicyVersion:
    """Make `text` the current version; an unchanged text keeps its version."""
    if document not in DOCUMENTS or language not in LANGUAGES:
        raise ValueError(f"unknown policy document {document!r} or language {language!r}")
    text = text.strip()
    if not text:
        raise ValueError("policy text is empty")
    latest = current(document, language)
    digest = text_sha256(text)
    if latest is not None and latest.sha256 == digest:
        return latest
    return PolicyVersion.create(document=document, language=language, text=text, sha256=digest)


def ensure_policies(store_name: str, controller: str, contact: str, retention_days: int,
                    max_per_month: int = 4, dpo: str = "") -> None:
    """Publish the default text of any document and language that has no version yet (a new
    purpose on an existing install), and the current default over a text still at a former default
    (the owner never edited it); an owner's own text is kept. `dpo` (the data protection contact,
    `dpo_contact`) fills a text's {dpo}; empty means `contact`."""
    values = {"store": store_name, "controller": controller or store_name, "contact": contact,
              "retention": retention_days, "max_per_month": max_per_month, "dpo": dpo or contact}
    with PolicyVersion._meta.database.atomic():
        for document in DOCUMENTS:
            for language in LANGUAGES:
                latest = current(document, language)
                former = {t.format(**values) for t in FORMER_DEFAULTS.get(document, {}).get(language, ())}
                if latest is None or latest.text in former:
                    publish(document, language, DEFAULTS[document][language].format(**values))


def current_set(language: str) -> dict[str, PolicyVersion]:
    return {doc: current(doc, language) for doc in DOCUMENTS}


def record(lead: Lead, purpose: str, granted: bool, where: Where,
           policy: PolicyVersion | None = None, at: datetime.datetime | None = None,
           uid: str | None = None) -> Consent:
    """Append one grant or withdrawal, with the outbox event the central store needs. `at` and
    `uid` are given when a sign-in kept in the journal is replayed (its own time, idempotent)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}")
    if at is None:
        at, suspect = clock.utcnow()
        extra = {"created_at": at, "clock_suspect": suspect}
    else:
        extra = {"created_at": at}
    if uid:
        extra["uid"] = uid
    consent = Consent.create(
        lead=lead, purpose=purpose, granted=granted, policy=policy,
        policy_sha256=policy.sha256 if policy else None, store_id=where.store_id,
        device_mac=where.mac, ip=where.ip, method=where.method, **extra)
    OutboxEvent.emit("consent.recorded", consent=consent.uid, lead=lead.uid, purpose=purpose,
                     granted=granted, policy_sha256=consent.policy_sha256)
    if purpose == CHAIN_SHARING:  # the central store merges the person across stores, or keeps them apart, by it
        OutboxEvent.emit("lead.upserted", lead=lead.uid)
    return consent


# Double opt-in (issue 11): a marketing consent is recorded at once as given, but it counts only for
# a channel the person proved with a code. SQL over a consent `c` joined to its lead `l`.
CHANNEL_OF = {"marketing_email": ("email",), "marketing_sms": ("phone",), "ad_audiences": ("email", "phone")}
# A purpose with no channel (the WiFi terms, visit analytics, chain sharing) counts as given.
COUNTS_SQL = (f"(c.purpose NOT IN ({', '.join(repr(p) for p in CHANNEL_OF)}) "
              "OR (c.purpose = 'marketing_email' AND l.email_verified_at IS NOT NULL) "
              "OR (c.purpose = 'marketing_sms' AND l.phone_verified_at IS NOT NULL) "
              "OR (c.purpose = 'ad_audiences' AND (l.email_verified_at IS NOT NULL OR l.phone_verified_at IS NOT NULL)))")


def counts(lead: Lead, purpose: str) -> bool:
    """Whether a consent to `purpose` of this lead counts now (its channel verified)."""
    kinds = CHANNEL_OF.get(purpose)
    return kinds is None or any(getattr(lead, f"{k}_verified_at") is not None for k in kinds)


def effective_purposes(lead: Lead) -> set[str]:
    """Granted purposes that count: what messages, exports and the chain may act on."""
    return {p for p in granted_purposes(lead) if counts(lead, p)}


def state(lead: Lead) -> dict[str, Consent | None]:
    """The latest event of each purpose: what the person currently agrees to."""
    latest = (Consent.select(Consent.purpose, fn.MAX(Consent.id).alias("last"))
              .where(Consent.lead == lead).group_by(Consent.purpose))
    ids = [row.last for row in latest]
    rows = {c.purpose: c for c in Consent.select().where(Consent.id.in_(ids))} if ids else {}
    return {purpose: rows.get(purpose) for purpose in PURPOSES}


def granted_purposes(lead: Lead) -> set[str]:
    return {p for p, c in state(lead).items() if c is not None and c.granted}


def latest_granted(lead: Lead, purpose: str) -> bool:
    """Whether the latest event of `purpose` for this lead is a grant (one indexed query)."""
    last = (Consent.select(Consent.granted).where((Consent.lead == lead) & (Consent.purpose == purpose))
            .order_by(Consent.id.desc()).first())
    return last is not None and last.granted


def follows_visits(lead: Lead) -> bool:
    """Whether the person's visits may be followed from day to day (segments, new and returning)."""
    return latest_granted(lead, VISIT_ANALYTICS)


def shares_with_chain(lead: Lead) -> bool:
    """Whether the central store may merge the person across the chain's stores."""
    return latest_granted(lead, CHAIN_SHARING)


# The leads whose latest visit_analytics event is a grant: SQL over the consent table, the one
# gate of per-person visit figures (portal/segments.py, portal/metrics.py).
FOLLOWED_LEADS_SQL = ("SELECT c.lead_id FROM consent c JOIN (SELECT max(id) AS id FROM consent WHERE purpose = "
                      f"'{VISIT_ANALYTICS}' GROUP BY lead_id) latest ON latest.id = c.id WHERE c.granted = 1")


def has_current_terms(lead: Lead) -> bool:
    """True when the latest terms consent is a grant of the version now shown in its language."""
    last = state(lead)[REQUIRED_PURPOSE]
    if last is None or not last.granted or last.policy is None:
        return False
    now = current(REQUIRED_PURPOSE, last.policy.language)
    return now is not None and now.sha256 == last.policy_sha256


def history(lead: Lead) -> list[Consent]:
    return list(Consent.select().where(Consent.lead == lead).order_by(Consent.id))
