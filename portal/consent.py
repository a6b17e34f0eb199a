"""Policy versions and the append-only consent log."""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import re
from dataclasses import dataclass

from peewee import fn

from portal import clock, erasure_ledger
from portal.models import Consent, Lead, OutboxEvent, PolicyVersion
from portal.core.purposes import CHAIN_SHARING, LANGUAGES, VISIT_ANALYTICS
from portal.policy_texts import _PLACEHOLDER as _PLACEHOLDER_SPLIT  # the placeholder syntax, one group
from portal.policy_texts import (DEFAULTS, DOCUMENTS, FORMER_DEFAULTS, NOTICE, PLACEHOLDERS, PURPOSES, REQUIRED_PURPOSE,
                                 TextError, missing_sections, placeholders, render, unknown_placeholders)


log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Rerender:
    """A text whose rendering changes with new settings: what is shown now, and what would be."""
    document: str
    language: str
    before: str
    after: str


def publish(document: str, language: str, text: str, *, template: str | None = None,
            material: bool = True) -> PolicyVersion:
    """Make `text` (as shown) the current version, rendered from `template` (default: the text
    itself). `material`: whether it differs materially from the version in force (a material
    change asks people again; the first version of a text is no change). An unchanged text keeps
    its version. A notice lacking a section the law lists, or a template naming an unknown
    placeholder, is refused (TextError) and nothing is published."""
    text = text.strip()
    template = text if template is None else template.strip()
    check(document, language, text, template)
    latest = current(document, language)
    digest = text_sha256(text)
    if latest is not None and latest.sha256 == digest:
        if latest.template != template:  # the same words from a new template: no new version
            latest.template = template
            latest.save(only=[PolicyVersion.template])
        return latest
    material = bool(material) and latest is not None
    before = _counting_grants() if material else set()
    version = PolicyVersion.create(document=document, language=language, text=text, sha256=digest,
                                   template=template, material=material)
    if material:
        _tell_lapsed(before - _counting_grants())
    return version


def _counting_grants() -> set[tuple[int, str, str]]:
    """The latest grants that rest on a text and have not lapsed: (lead id, lead uid, purpose)."""
    return {tuple(row) for row in PolicyVersion._meta.database.execute_sql(
        "SELECT c.lead_id, l.uid, c.purpose FROM consent c JOIN (SELECT max(id) AS id FROM consent "
        "GROUP BY lead_id, purpose) latest ON latest.id = c.id JOIN lead l ON l.id = c.lead_id "
        f"AND l.erased_at IS NULL WHERE c.granted = 1 AND c.policy_id IS NOT NULL AND {VALID_SQL}")}


def _tell_lapsed(lapsed: set[tuple[int, str, str]]) -> None:
    """A material change lapsed these consents here (they count again once the person agrees
    again): the central store and the webhooks learn it as they learn a withdrawal, with the
    method "lapsed"; the appliance's own log is unchanged (the grant stays, judged by VALID_SQL)."""
    from portal.models import new_uid
    for _lead_id, lead_uid, purpose in sorted(lapsed):
        OutboxEvent.emit("consent.recorded", consent=new_uid(), lead=lead_uid, purpose=purpose, granted=False,
                         policy_sha256=None, method="lapsed")
        if purpose == CHAIN_SHARING:
            OutboxEvent.emit("lead.upserted", lead=lead_uid)


def check(document: str, language: str, text: str, template: str) -> None:
    """Refuse (TextError) a text that cannot be published: empty, an unknown placeholder, a notice
    without a section the law lists."""
    if document not in DOCUMENTS or language not in LANGUAGES:
        raise ValueError(f"unknown policy document {document!r} or language {language!r}")
    if not text.strip():
        raise TextError("empty")
    unknown = unknown_placeholders(template)
    if unknown:
        raise TextError("placeholder", ", ".join("{" + name + "}" for name in unknown))
    if document == NOTICE:
        missing = missing_sections(text, language)
        if missing:
            raise TextError("sections", "; ".join(missing))


def publish_template(document: str, language: str, template: str, settings, material: bool) -> PolicyVersion:
    """Publish an owner's template, rendered with the settings in force."""
    return publish(document, language, render(template, placeholders(settings, language)),
                   template=template, material=material)


def template_of(version: PolicyVersion) -> str:
    return version.template if version.template is not None else version.text


def rerenders(settings) -> list[Rerender]:
    """Every text in force whose rendering with `settings` differs from what is shown now (a
    renamed store, a new contact...): what the owner confirms before it is published."""
    out = []
    for document in DOCUMENTS:
        for language in LANGUAGES:
            latest = current(document, language)
            if latest is None or latest.template is None:
                continue
            after = render(latest.template, placeholders(settings, language))
            if after == latest.text:
                continue
            try:
                check(document, language, after, latest.template)
            except TextError as exc:  # an owner's text the checks now refuse: left as it is, said in the log
                log.warning("%s/%s not re-rendered with the new settings: %s", document, language, exc)
                continue
            out.append(Rerender(document, language, latest.text, after))
    return out


def rerender(settings, material: bool | None = False) -> list[PolicyVersion]:
    """Publish the new rendering of every text `rerenders` lists: editorial unless told (a new
    name or address changes no purpose; consents stay valid). `material=None`: judged per text,
    editorial only when names and addresses alone changed (`changes_promises`)."""
    published = []
    for change in rerenders(settings):
        latest = current(change.document, change.language)
        kind = material
        if kind is None:
            kind = changes_promises(latest.template, change.before, settings, change.language)
            if kind:
                log.warning("%s/%s: the settings change what it promises (not only names): published as a material "
                            "change, people are asked again (the panel's settings page lets the owner decide)",
                            change.document, change.language)
        published.append(publish(change.document, change.language, change.after, template=latest.template,
                                 material=kind))
    return published


_IDENTITY_PLACEHOLDERS = {"store": "store_name", "controller": "controller_name", "contact": "privacy_contact",
                          "dpo": "dpo_contact"}


def shown_values(template: str, text: str) -> dict[str, str] | None:
    """The value each placeholder had in `text`, the rendering of `template`; None when the text is
    no rendering of it."""
    pattern, seen = [], set()
    for i, part in enumerate(_PLACEHOLDER_SPLIT.split(template.strip())):
        if i % 2 == 0:
            pattern.append(re.escape(part))
        elif part not in PLACEHOLDERS:
            pattern.append(re.escape("{" + part + "}"))
        elif part in seen:
            pattern.append(f"(?P={part})")
        else:
            seen.add(part)
            pattern.append(f"(?P<{part}>.*?)")
    match = re.fullmatch("".join(pattern), text.strip(), re.DOTALL)
    return match.groupdict() if match else None


def changes_promises(template: str, before: str, settings, language: str) -> bool:
    """Whether rendering `template` with `settings` changes more than names and addresses in the
    text shown (`before`): the retention, the organisations involved, the transfers, the age rule...
    Unknown (the text is no rendering of the template): True."""
    old = shown_values(template, before)
    if old is None:
        return True
    names = {field: old[p] for p, field in _IDENTITY_PLACEHOLDERS.items() if p in old}
    if "privacy_url" in old and old["privacy_url"].endswith("/privacy"):
        names["portal_url"] = old["privacy_url"][:-len("/privacy")]
    renamed = placeholders(dataclasses.replace(settings, **names), language)
    return any(renamed[p] != value for p, value in old.items() if p not in _IDENTITY_PLACEHOLDERS)


def ensure_policies(settings) -> list[PolicyVersion]:
    """Publish the default of any text that has none yet (a new purpose on an existing install),
    the current default over a text still at a former default (never edited by the owner), and
    the new rendering of every template whose settings changed (the settings file: a new name,
    contact, provider...), the last two as editorial changes. An owner's own text is kept."""
    published = []
    with PolicyVersion._meta.database.atomic():
        for document in DOCUMENTS:
            for language in LANGUAGES:
                values = placeholders(settings, language)
                latest = current(document, language)
                default = DEFAULTS[document][language]
                former = {render(t, values) for t in FORMER_DEFAULTS.get(document, {}).get(language, ())}
                if latest is None or latest.text in former:
                    published.append(publish(document, language, render(default, values), template=default,
                                             material=False))
                elif latest.template is None and latest.text == render(default, values):
                    latest.template = default  # a version from before templates: it is the default's rendering
                    latest.save(only=[PolicyVersion.template])
        published += rerender(settings, material=None)  # a settings file: no owner to ask, so judged
    return published


def current_set(language: str) -> dict[str, PolicyVersion]:
    return {doc: current(doc, language) for doc in DOCUMENTS}


def record(lead: Lead, purpose: str, granted: bool, where: Where,
           policy: PolicyVersion | None = None, at: datetime.datetime | None = None,
           uid: str | None = None, ledger: bool = True) -> Consent:
    """Append one grant or withdrawal, with the outbox event the central store needs. `at` and
    `uid` are given when a sign-in kept in the journal is replayed (its own time, idempotent).
    A withdrawal is also noted in the erasure ledger (`ledger`), so a restore from backup redoes it."""
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
    if not granted and ledger and where.method != "erasure":  # an erasure is noted whole
        erasure_ledger.note("withdraw", where.store_id, lead=lead.uid, purpose=purpose)
    if purpose == CHAIN_SHARING:  # the central store merges the person across stores, or keeps them apart, by it
        OutboxEvent.emit("lead.upserted", lead=lead.uid)
    if purpose == VISIT_ANALYTICS and granted and follows(lead.id):
        send_links(lead)  # the central store learns the devices whose visits it will count
    if purpose == VISIT_ANALYTICS and not granted and where.method != "erasure":  # (an erasure deletes them)
        # Followed no more: what was kept stops being theirs.
        from portal.visits import unfollow
        unfollow(lead.id)
    return consent


# Material changes (issue 15/16): a consent rests on the version of its text it was given on. It
# stays valid across editorial changes (a renamed store, a new contact, a clearer wording) and lapses
# when a later version of its text in the same language, or of the privacy notice after it was given,
# is marked material: the person is asked again and, until they agree again, the consent counts for
# nothing. A consent without a version (none was shown) is judged by its channel alone.
# SQL over a consent `c`.
VALID_SQL = ("(c.policy_id IS NULL OR (c.policy_id NOT IN (SELECT pv.id FROM policy_version pv JOIN policy_version later "
             "ON later.language = pv.language AND later.document = pv.document AND later.material = 1 AND later.id > pv.id) "
             "AND NOT EXISTS (SELECT 1 FROM policy_version pv JOIN policy_version later ON later.language = pv.language "
             f"AND later.document = '{NOTICE}' AND later.material = 1 AND later.created_at > c.created_at "
             "WHERE pv.id = c.policy_id)))")

# Double opt-in (issue 11): a marketing consent is recorded at once as given, but it counts only for
# a channel the person proved with a code. SQL over a consent `c` joined to its lead `l`.
CHANNEL_OF = {"marketing_email": ("email",), "marketing_sms": ("phone",), "ad_audiences": ("email", "phone")}
# A purpose with no channel (the WiFi terms, visit analytics, chain sharing) counts as given.
CHANNEL_SQL = (f"(c.purpose NOT IN ({', '.join(repr(p) for p in CHANNEL_OF)}) "
               "OR (c.purpose = 'marketing_email' AND l.email_verified_at IS NOT NULL) "
               "OR (c.purpose = 'marketing_sms' AND l.phone_verified_at IS NOT NULL) "
               "OR (c.purpose = 'ad_audiences' AND (l.email_verified_at IS NOT NULL OR l.phone_verified_at IS NOT NULL)))")
# Whether a consent counts: its channel proved, its text not materially changed since.
COUNTS_SQL = f"({CHANNEL_SQL} AND {VALID_SQL})"


def is_valid(c: Consent) -> bool:
    """Whether no material change of its text (or of the notice) came after this consent."""
    if c.policy_id is None:
        return True
    return bool(PolicyVersion._meta.database.execute_sql(f"SELECT {VALID_SQL} FROM consent c WHERE c.id = ?",
                                                         (c.id,)).fetchone()[0])


def counts(lead: Lead, purpose: str, c: Consent | None = None) -> bool:
    """Whether a consent to `purpose` of this lead counts now (its channel verified and, given
    the consent `c`, its text not materially changed since)."""
    kinds = CHANNEL_OF.get(purpose)
    channel = kinds is None or any(getattr(lead, f"{k}_verified_at") is not None for k in kinds)
    return channel and (c is None or is_valid(c))


def effective_purposes(lead: Lead) -> set[str]:
    """Granted purposes that count: what messages, exports and the chain may act on."""
    return {p for p, c in state(lead).items() if c is not None and c.granted and counts(lead, p, c)}


def stale_purposes(lead: Lead) -> set[str]:
    """Purposes the person granted on a text since changed materially: to be asked again."""
    return {p for p, c in state(lead).items() if c is not None and c.granted and not is_valid(c)}


# The consents in force that count on their text: what a material change of it would lapse.
_IN_FORCE = ("FROM consent c JOIN (SELECT max(id) AS id FROM consent GROUP BY lead_id, purpose) latest ON latest.id = c.id "
             "JOIN policy_version p ON p.id = c.policy_id JOIN lead l ON l.id = c.lead_id AND l.erased_at IS NULL "
             f"WHERE c.granted = 1 AND {VALID_SQL}")


def asked_again_all() -> dict[tuple[str, str], int]:
    """How many people a material change of each text would ask again: those whose consent in
    force rests on it (for the notice: on any text in its language). Two queries for the page."""
    db = PolicyVersion._meta.database
    out = {(document, language): 0 for document in DOCUMENTS for language in LANGUAGES}
    for language, purpose, n in db.execute_sql(f"SELECT p.language, c.purpose, count(*) {_IN_FORCE} GROUP BY 1, 2"):
        out[(purpose, language)] = n
    for language, n in db.execute_sql(f"SELECT p.language, count(DISTINCT c.lead_id) {_IN_FORCE} GROUP BY 1"):
        out[(NOTICE, language)] = n
    return out


def asked_again(document: str, language: str) -> int:
    return asked_again_all()[(document, language)]


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
    """Whether the latest event of `purpose` for this lead is a grant still valid (no material
    change of its text since)."""
    last = (Consent.select().where((Consent.lead == lead) & (Consent.purpose == purpose))
            .order_by(Consent.id.desc()).first())
    return last is not None and last.granted and is_valid(last)


def follows_visits(lead: Lead) -> bool:
    """Whether the person's visits may be followed from day to day (segments, new and returning)."""
    return latest_granted(lead, VISIT_ANALYTICS)


def shares_with_chain(lead: Lead) -> bool:
    """Whether the central store may merge the person across the chain's stores."""
    return latest_granted(lead, CHAIN_SHARING)


# The leads whose latest visit_analytics event is a grant: SQL over the consent table, the one
# gate of per-person visit figures (portal/segments.py, portal/metrics.py).
FOLLOWED_LEADS_SQL = ("SELECT c.lead_id FROM consent c JOIN (SELECT max(id) AS id FROM consent WHERE purpose = "
                      f"'{VISIT_ANALYTICS}' GROUP BY lead_id) latest ON latest.id = c.id WHERE c.granted = 1 AND {VALID_SQL}")


def has_current_terms(lead: Lead) -> bool:
    """True when the latest terms consent is a grant of the version now shown in its language, or
    of an earlier one that differs from it only editorially."""
    last = state(lead)[REQUIRED_PURPOSE]
    if last is None or not last.granted or last.policy is None:
        return False
    return current(REQUIRED_PURPOSE, last.policy.language) is not None and is_valid(last)


def follows(lead_id: int) -> bool:
    """The one rule of who is followed (portal/visits.py FOLLOWED_PEOPLE_SQL: consent, no restriction, not erased)."""
    from portal.visits import FOLLOWED_PEOPLE_SQL
    return bool(PolicyVersion._meta.database.execute_sql(f"SELECT ? IN ({FOLLOWED_PEOPLE_SQL})", (lead_id,)).fetchone()[0])


def send_links(lead: Lead) -> None:
    """device.linked for each of the person's devices (the sync sends only followed people's)."""
    from portal.models import Device
    for (mac,) in Device.select(Device.mac).where((Device.lead == lead.id) & (Device.anonymous == False)).tuples():  # noqa: E712
        OutboxEvent.emit("device.linked", device=mac, lead=lead.uid)


def history(lead: Lead) -> list[Consent]:
    return list(Consent.select().where(Consent.lead == lead).order_by(Consent.id))
