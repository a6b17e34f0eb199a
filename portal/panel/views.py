"""Panel pages: dashboard, leads and one person's page (with the privacy desk's actions)."""
from __future__ import annotations

from flask import Response, abort, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from portal import consent, privacy, segments
from portal.identity import InvalidContact, normalize_email, normalize_phone
from peewee import fn

from portal.models import AuditLog, Consent, Device, Lead, Segment, SegmentMember, Visit
from portal.panel import SEES_PERSONAL_DATA, bp, requires, runtime, whole_number
from portal.policy_texts import MARKETING_PURPOSES, PURPOSES

PAGE = 50


@bp.get("/")
@login_required
def dashboard():
    figures, age = runtime().dashboard.get()
    return render_template("panel/dashboard.html", d=figures, age=int(age))


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
        number = whole_number(after)
        if number is None:
            abort(400)
        select = select.where(Lead.id < number)
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


def _lead(uid: str) -> Lead:
    lead = Lead.get_or_none((Lead.uid == uid[:64]) & Lead.erased_at.is_null())
    if lead is None:
        abort(404)
    return lead


@bp.get("/leads/<uid>")
@requires(*SEES_PERSONAL_DATA)
def lead_page(uid: str):
    rt = runtime()
    lead = _lead(uid)
    devices = list(Device.select().where(Device.lead == lead))
    visits = list(Visit.select().where(Visit.device.in_(devices), Visit.passerby == False)  # noqa: E712
                  .order_by(Visit.start.desc()).limit(50)) if devices else []
    AuditLog.record(current_user.actor, "lead_viewed", lead.uid, request.remote_addr)
    return render_template("panel/lead.html", lead=lead, devices=devices, visits=visits,
                           email=rt.vault.decrypt(lead.email_enc, "lead.email"),
                           phone=rt.vault.decrypt(lead.phone_enc, "lead.phone"),
                           name=rt.vault.decrypt(lead.name_enc, "lead.name"),
                           history=consent.history(lead), state=consent.state(lead), purposes=PURPOSES,
                           marketing=MARKETING_PURPOSES, segments=segments.segments_of(lead.id),
                           error=request.args.get("error"), field=request.args.get("field"))


@bp.get("/leads/<uid>/export.json")
@requires(*SEES_PERSONAL_DATA)
def lead_export(uid: str):
    lead = _lead(uid)
    body = privacy.export_json(lead, runtime().vault, current_user.actor)
    return Response(body, mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="person-{lead.uid}.json"',
                             "Cache-Control": "no-store"})


@bp.post("/leads/<uid>/correct")
@requires(*SEES_PERSONAL_DATA)
def lead_correct(uid: str):
    rt = runtime()
    lead = _lead(uid)
    f = request.form
    try:
        privacy.correct(lead, rt.vault, rt.settings.default_region, current_user.actor,
                        f.get("email", "")[:254], f.get("phone", "")[:32], f.get("name", "")[:80])
    except privacy.DeskError as exc:
        return redirect(url_for("panel.lead_page", uid=uid, error=exc.code))
    return redirect(url_for("panel.lead_page", uid=uid))


@bp.post("/leads/<uid>/withdraw")
@requires(*SEES_PERSONAL_DATA)
def lead_withdraw(uid: str):
    lead = _lead(uid)
    try:
        privacy.withdraw(lead, request.form.get("purpose", ""), runtime().settings.store_id, current_user.actor)
    except privacy.DeskError:
        abort(400)
    return redirect(url_for("panel.lead_page", uid=uid))


@bp.post("/leads/<uid>/erase")
@requires(*SEES_PERSONAL_DATA)
def lead_erase(uid: str):
    rt = runtime()
    lead = _lead(uid)
    if request.form.get("confirm") != "yes":
        abort(400)
    ips = [d.last_ip for d in Device.select().where(Device.lead == lead)]
    privacy.erase_person(lead, [], rt.gateway, rt.settings.store_id, current_user.actor)
    rt.visitors.online.forget(*ips)
    rt.dashboard.invalidate()
    return redirect(url_for("panel.leads"))
