"""Leads: the list (search, segment and consent filters, paging) and one person's page."""
from __future__ import annotations

from flask import abort, render_template, request
from flask_login import current_user
from peewee import fn

from portal import consent, segments
from portal.identity import InvalidContact, normalize_email, normalize_phone
from portal.models import AuditLog, Consent, ContactProof, Device, Lead, Segment, SegmentMember, Visit
from portal.core.numbers import INT64_MAX, NumberError, parse_int
from portal.panel import SEES_PERSONAL_DATA, bp, requires, runtime
from portal.core.purposes import MARKETING_PURPOSES, PURPOSES

PAGE = 50


def _page_id(raw: str) -> int:
    """A paging cursor (a row id): ASCII digits in range, else 400 (never int("²"), a 500)."""
    try:
        return parse_int(raw, 0, INT64_MAX)
    except NumberError:
        abort(400)


def _search_index(query: str) -> tuple[str, str] | None:
    """A typed email or phone as the blind index to look up; None when it is neither."""
    vault, region = runtime().vault, runtime().settings.default_region
    query = query.strip()
    if "@" in query:
        try:
            return "email", vault.blind_index("email", normalize_email(query))
        except InvalidContact:
            return None
    try:
        return "phone", vault.blind_index("phone", normalize_phone(query, region))
    except InvalidContact:
        return None


@bp.get("/leads")
@requires(*SEES_PERSONAL_DATA)
def leads():
    rt = runtime()
    query = request.args.get("q", "")[:254]
    segment_key = request.args.get("segment", "")
    purpose = request.args.get("consent", "")
    after = request.args.get("after", "")
    select = Lead.select().where(Lead.erased_at.is_null())
    if query:
        found = _search_index(query)
        if found is None:
            select = select.where(Lead.id == -1)
        else:
            kind, index = found
            select = select.where((Lead.email_index if kind == "email" else Lead.phone_index) == index)
    if segment_key:
        segment = Segment.get_or_none(Segment.key == segment_key) or abort(400)
        select = select.where(Lead.id.in_(SegmentMember.select(SegmentMember.lead).where(SegmentMember.segment == segment)))
    if purpose in MARKETING_PURPOSES:
        select = select.where(Lead.id.in_(_granted(purpose)))
    if after:
        select = select.where(Lead.id < _page_id(after))
    page = list(select.order_by(Lead.id.desc()).limit(PAGE + 1))
    more = len(page) > PAGE
    page = page[:PAGE]
    rows = [(lead, rt.vault.decrypt(lead.email_enc, "lead.email"), rt.vault.decrypt(lead.phone_enc, "lead.phone"),
             rt.vault.decrypt(lead.name_enc, "lead.name")) for lead in page]
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
    visits = list(Visit.select().where(Visit.device.in_(devices), Visit.passerby == False)  # noqa: E712
                  .order_by(Visit.start.desc()).limit(50)) if devices else []
    AuditLog.record(current_user.actor, "lead_viewed", lead.uid, request.remote_addr)
    return render_template("panel/lead.html", lead=lead, devices=devices, visits=visits,
                           email=rt.vault.decrypt(lead.email_enc, "lead.email"),
                           phone=rt.vault.decrypt(lead.phone_enc, "lead.phone"),
                           name=rt.vault.decrypt(lead.name_enc, "lead.name"),
                           history=consent.history(lead), state=consent.state(lead), purposes=PURPOSES,
                           counting=consent.effective_purposes(lead), proofs=list(lead.proofs.order_by(ContactProof.id)),
                           marketing=MARKETING_PURPOSES, segments=segments.segments_of(lead.id),
                           error=request.args.get("error"), field=request.args.get("field"))
