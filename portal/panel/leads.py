"""Leads: the list (search, segment and consent filters, paging) and one person's page."""
from __future__ import annotations

import datetime
from dataclasses import dataclass

import phonenumbers
from flask import abort, render_template, request
from flask_login import current_user
from peewee import SQL, fn

from portal import consent, name_index, segments
from portal.activation import results as activation_results
from portal.identity import InvalidContact, mask_phone, normalize_email, normalize_phone
from portal.db import database
from portal.visits import FOLLOWED_PEOPLE_SQL
from portal.models import AuditLog, Consent, ContactProof, Device, Lead, LeadNameWord, Segment, SegmentMember, Visit
from portal.core.numbers import INT64_MAX, NumberError, parse_int
from portal.panel import SEES_PERSONAL_DATA, bp, requires, runtime
from portal.core.purposes import MARKETING_PURPOSES, OPTIONAL_PURPOSES, PURPOSES, REQUIRED_PURPOSE

PAGE = 50


def _page_id(raw: str) -> int:
    """A paging cursor (a row id): ASCII digits in range, else 400 (never int("²"), a 500)."""
    try:
        return parse_int(raw, 0, INT64_MAX)
    except NumberError:
        abort(400)


def _search(select, query: str):
    """Narrow `select` to the people a typed email, phone or name finds (indexed look-ups only);
    returns it with the column to order and page by."""
    vault, region = runtime().vault, runtime().settings.default_region
    query = query.strip()
    if "@" in query:
        try:
            return select.where(Lead.email_index == vault.blind_index("email", normalize_email(query))), Lead.id
        except InvalidContact:
            return select.where(Lead.id == -1), Lead.id
    if not any(ch.isalpha() for ch in query):
        try:
            return select.where(Lead.phone_index == vault.blind_index("phone", normalize_phone(query, region))), Lead.id
        except InvalidContact:
            return select.where(Lead.id == -1), Lead.id
    words = name_index.indexes(vault, query)
    if not words:
        return select.where(Lead.id == -1), Lead.id
    # One join per word, each an equality on (word, lead). Ordered and paged by the first word's
    # lead column, SQLite walks that index backwards from the cursor and stops after one page,
    # whether the word is rare or every eighth person's (ordered by lead.id, it sorts them all).
    if len(words) > 1:  # the rarest word drives (counts capped: a few index pages each)
        words.sort(key=_frequency)
    aliases = [LeadNameWord.alias() for _ in words]
    for alias, word in zip(aliases, words):
        select = select.join(alias, on=((alias.lead == Lead.id) & (alias.word == word)))
    return select, aliases[0].lead


def _frequency(word: str, cap: int = 2000) -> int:
    inner = LeadNameWord.select(LeadNameWord.lead).where(LeadNameWord.word == word).limit(cap)
    return LeadNameWord.select(fn.COUNT(SQL("1"))).from_(inner).scalar()


def national(phone: str | None, region: str) -> str | None:
    """A phone as the store's staff write it: national format at home, international abroad."""
    if not phone:
        return None
    try:
        number = phonenumbers.parse(phone, region.upper())
    except phonenumbers.NumberParseException:
        return phone
    home = phonenumbers.region_code_for_number(number) == region.upper()
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL if home
                                      else phonenumbers.PhoneNumberFormat.INTERNATIONAL)


@dataclass(frozen=True)
class Row:
    """One line of the leads list: the person, their contacts, visits and what they agree to."""
    lead: Lead
    label: str  # the link to the person: the name, else the email, else the masked phone
    email: str | None
    phone: str | None  # national format
    name: str | None
    visits: int
    last_visit: datetime.datetime | None
    consents: tuple[str, ...]  # purposes granted now (besides the WiFi terms)
    waiting: frozenset[str]    # of those, marketing ones that count only once their channel is proved


def _rows(page: list[Lead]) -> list[Row]:
    """The page's rows: two grouped queries over the page's ids, whatever the store's size."""
    rt = runtime()
    ids = [lead.id for lead in page]
    visits: dict[int, tuple[int, datetime.datetime | None]] = {}
    granted: dict[int, set[str]] = {i: set() for i in ids}
    if ids:
        for lead_id, count, last in (Visit.select(Device.lead, fn.COUNT(Visit.id), fn.MAX(Visit.start))
                                     .join(Device).where(Device.lead.in_(ids), Visit.passerby == False,  # noqa: E712
                                                         # per-person figures: only people whose visits may be followed
                                                         Device.lead.in_(SQL(f"({FOLLOWED_PEOPLE_SQL})")))
                                     .group_by(Device.lead).tuples()):
            visits[lead_id] = (count, Visit.start.python_value(last))
        latest = (Consent.select(fn.MAX(Consent.id)).where(Consent.lead.in_(ids))
                  .group_by(Consent.lead, Consent.purpose))
        for lead_id, purpose in (Consent.select(Consent.lead, Consent.purpose)
                                 .where(Consent.id.in_(latest), Consent.granted == True).tuples()):  # noqa: E712
            granted[lead_id].add(purpose)
    rows = []
    for lead in page:
        email = rt.vault.decrypt(lead.email_enc, "lead.email")
        phone = rt.vault.decrypt(lead.phone_enc, "lead.phone")
        name = rt.vault.decrypt(lead.name_enc, "lead.name")
        shown = national(phone, rt.settings.default_region)
        label = name or email or (mask_phone(shown.replace(" ", "")) if shown else lead.uid[:8])
        count, last = visits.get(lead.id, (0, None))
        agreed = tuple(p for p in PURPOSES if p in granted[lead.id] and p != REQUIRED_PURPOSE)
        rows.append(Row(lead, label, email, shown, name, count, last, agreed,
                        frozenset(p for p in agreed if not consent.counts(lead, p))))
    return rows


@bp.get("/leads")
@requires(*SEES_PERSONAL_DATA)
def leads():
    query = request.args.get("q", "")[:254]
    segment_key = request.args.get("segment", "")
    purpose = request.args.get("consent", "")
    after = request.args.get("after", "")
    select, key = Lead.select().where(Lead.erased_at.is_null()), Lead.id
    if query:
        select, key = _search(select, query)
    if segment_key:
        segment = Segment.get_or_none(Segment.key == segment_key) or abort(400)
        select = select.where(Lead.id.in_(SegmentMember.select(SegmentMember.lead).where(SegmentMember.segment == segment)))
    if purpose in MARKETING_PURPOSES:
        select = select.where(Lead.id.in_(_granted(purpose)))
    if after:
        select = select.where(key < _page_id(after))
    page = list(select.order_by(key.desc()).limit(PAGE + 1))
    more = len(page) > PAGE
    page = page[:PAGE]
    rows = _rows(page)
    AuditLog.record(current_user.actor, "leads_viewed", None, request.remote_addr, count=len(rows), q=bool(query),
                    segment=segment_key or None, consent=purpose or None)
    return render_template("panel/leads.html", rows=rows, more=more, next_after=page[-1].id if page else None,
                           q=query, segment=segment_key, consent_filter=purpose, segments=list(Segment.select()),
                           purposes=MARKETING_PURPOSES)


def _granted(purpose: str):
    """Leads whose latest event for `purpose` is a grant."""
    latest = Consent.select(fn.MAX(Consent.id)).group_by(Consent.lead, Consent.purpose)
    return Consent.select(Consent.lead).where(Consent.id.in_(latest) & (Consent.purpose == purpose)
                                              & (Consent.granted == True))  # noqa: E712


def lead_or_404(uid: str) -> Lead:
    """A person not erased, by uid; 404 otherwise (the privacy desk's pages use it too)."""
    lead = Lead.get_or_none((Lead.uid == uid[:64]) & Lead.erased_at.is_null())
    if lead is None:
        abort(404)
    return lead


@bp.get("/leads/<uid>")
@requires(*SEES_PERSONAL_DATA)
def lead_page(uid: str):
    rt = runtime()
    lead = lead_or_404(uid)
    devices = list(Device.select().where(Device.lead == lead))
    # The person's visits only while they may be followed (visit analytics that counts, no
    # restriction): the desk's JSON export (privacy.person_data) still holds everything kept.
    followed = bool(database.execute_sql(f"SELECT ? IN ({FOLLOWED_PEOPLE_SQL})", (lead.id,)).fetchone()[0])
    visits = list(Visit.select().where(Visit.device.in_(devices), Visit.passerby == False)  # noqa: E712
                  .order_by(Visit.start.desc()).limit(50)) if devices and followed else []
    AuditLog.record(current_user.actor, "lead_viewed", lead.uid, request.remote_addr)
    return render_template("panel/lead.html", lead=lead, devices=devices, visits=visits, followed=followed,
                           email=rt.vault.decrypt(lead.email_enc, "lead.email"),
                           phone=national(rt.vault.decrypt(lead.phone_enc, "lead.phone"), rt.settings.default_region),
                           name=rt.vault.decrypt(lead.name_enc, "lead.name"),
                           history=consent.history(lead), state=consent.state(lead), purposes=PURPOSES,
                           counting=consent.effective_purposes(lead), proofs=list(lead.proofs.order_by(ContactProof.id)),
                           marketing=MARKETING_PURPOSES, optional=OPTIONAL_PURPOSES,
                           segments=segments.segments_of(lead.id),
                           error=request.args.get("error"), field=request.args.get("field"),
                           activity=activation_results.person(lead.id))
