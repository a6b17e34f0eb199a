"""The privacy desk: data-subject requests with the law's clocks and the requester's verification, and one
person's copy, correction, withdrawal, restriction and erasure."""
from __future__ import annotations

import json

from flask import Response, abort, redirect, render_template, request, url_for
from flask_login import current_user

from portal import health, jobs, privacy, retention
from portal.models import AuditEntry, DataRequest, Device, Lead, utcnow
from portal.panel import SEES_PERSONAL_DATA, bp, requires, runtime
from portal.panel.leads import lead_or_404
from portal.verification import VerificationError


@bp.get("/privacy")
@requires(*SEES_PERSONAL_DATA)
def privacy_desk():
    rt = runtime()
    now = utcnow()
    requests_ = list(DataRequest.select().order_by(DataRequest.status.desc(), DataRequest.due_at).limit(200))
    last = AuditEntry.select().where(AuditEntry.action == "purge").order_by(AuditEntry.id.desc()).first()
    flags = {r.id: privacy.clock_flags(r, now) for r in requests_}
    on_portal = privacy.made_on_portal()
    # The guests' own actions link to the person while there is one (a withdrawal; never an erasure).
    live = {uid for (uid,) in Lead.select(Lead.uid).where(Lead.uid.in_({e.subject for e in on_portal if e.subject}),
                                                          Lead.erased_at.is_null()).tuples()}
    return render_template("panel/privacy.html", requests=requests_, kinds=privacy.REQUEST_KINDS, now=now, flags=flags,
                           late=sum(1 for f in flags.values() if f), checks=privacy.MANUAL_CHECKS,
                           on_portal=on_portal, live=live, detail=lambda e: json.loads(e.detail or "{}"),
                           due=retention.due_for_purge(rt.settings.retention_days), next_purge=next_purge(rt.settings),
                           last_purge=last.at if last else None, retention_days=rt.settings.retention_days,
                           requester=lambda r: rt.vault.decrypt(r.requester_enc, "request.requester"),
                           error=request.args.get("error"), sent=request.args.get("sent"))


def next_purge(settings):
    """The next purge as the running scheduler plans it; computed from the job table (which loads
    APScheduler into this process) only when no scheduler says so (the demo, a stopped one)."""
    return health.next_run(settings.data_dir, "purge") or jobs.next_run("purge", settings)


@bp.post("/privacy/requests")
@requires(*SEES_PERSONAL_DATA)
def request_new():
    rt = runtime()
    try:
        lead = privacy.find_person(request.form.get("person", ""), rt.vault, rt.settings.default_region)
        privacy.open_request(request.form.get("kind", ""), utcnow(), privacy.rules_from(rt.settings), rt.vault,
                             current_user.actor, lead, request.form.get("requester", "")[:200],
                             processor=request.form.get("processor") == "yes")
    except privacy.DeskError as exc:
        return redirect(url_for("panel.privacy_desk", error=exc.code))
    return redirect(url_for("panel.privacy_desk"))


def _request_or_404(request_id: int) -> DataRequest:
    return DataRequest.get_or_none(DataRequest.id == request_id) or abort(404)


def _act(action):
    """Run one desk action; its refusal comes back to the desk as an error code, never a 500."""
    try:
        extra = action() or {}
    except privacy.DeskError as exc:
        return redirect(url_for("panel.privacy_desk", error=exc.code))
    except VerificationError as exc:
        return redirect(url_for("panel.privacy_desk", error=f"code_{exc.code}"))
    return redirect(url_for("panel.privacy_desk", **extra))


@bp.post("/privacy/requests/<int:request_id>")
@requires(*SEES_PERSONAL_DATA)
def request_close(request_id: int):
    item = _request_or_404(request_id)
    return _act(lambda: privacy.close_request(item, request.form.get("status", ""), current_user.actor))


@bp.post("/privacy/requests/<int:request_id>/acknowledge")
@requires(*SEES_PERSONAL_DATA)
def request_acknowledge(request_id: int):
    item = _request_or_404(request_id)
    return _act(lambda: privacy.acknowledge(item, current_user.actor))


@bp.post("/privacy/requests/<int:request_id>/extend")
@requires(*SEES_PERSONAL_DATA)
def request_extend(request_id: int):
    item = _request_or_404(request_id)
    return _act(lambda: privacy.extend(item, request.form.get("reason", "")[:400], privacy.rules_from(runtime().settings),
                                       current_user.actor))


@bp.post("/privacy/requests/<int:request_id>/link")
@requires(*SEES_PERSONAL_DATA)
def request_link(request_id: int):
    rt = runtime()
    item = _request_or_404(request_id)

    def link():
        lead = privacy.find_person(request.form.get("person", ""), rt.vault, rt.settings.default_region)
        if lead is None:
            raise privacy.DeskError("person_unknown")
        privacy.link_person(item, lead, current_user.actor)
    return _act(link)


@bp.post("/privacy/requests/<int:request_id>/verify")
@requires(*SEES_PERSONAL_DATA)
def request_verify(request_id: int):
    item = _request_or_404(request_id)
    return _act(lambda: privacy.verify_manually(item, request.form.get("method", ""), current_user.actor))


@bp.post("/privacy/requests/<int:request_id>/code")
@requires(*SEES_PERSONAL_DATA)
def request_code_send(request_id: int):
    item = _request_or_404(request_id)
    contacts = runtime().visitors.contacts
    return _act(lambda: {"sent": privacy.send_code(item, request.form.get("contact", ""), contacts, current_user.actor)})


@bp.post("/privacy/requests/<int:request_id>/code/check")
@requires(*SEES_PERSONAL_DATA)
def request_code_check(request_id: int):
    item = _request_or_404(request_id)
    contacts = runtime().visitors.contacts
    return _act(lambda: privacy.check_code(item, request.form.get("code", "")[:16], contacts, current_user.actor))


@bp.get("/privacy/requests/<int:request_id>/provision.json")
@requires(*SEES_PERSONAL_DATA)
def request_provision(request_id: int):
    item = _request_or_404(request_id)
    try:
        body = privacy.provision(item, runtime().vault, current_user.actor)
    except privacy.DeskError as exc:
        return redirect(url_for("panel.privacy_desk", error=exc.code))
    return Response(body, mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="request-{item.id}.json"',
                             "Cache-Control": "no-store"})


@bp.post("/leads/<uid>/restrict")
@requires(*SEES_PERSONAL_DATA)
def lead_restrict(uid: str):
    lead = lead_or_404(uid)
    if request.form.get("lift") == "yes":
        try:
            privacy.lift_restriction(lead, current_user.actor)
        except privacy.DeskError as exc:
            return redirect(url_for("panel.lead_page", uid=uid, error=exc.code))
    else:
        privacy.restrict(lead, current_user.actor, "panel")
    runtime().dashboard.invalidate()
    return redirect(url_for("panel.lead_page", uid=uid))


@bp.get("/leads/<uid>/export.json")
@requires(*SEES_PERSONAL_DATA)
def lead_export(uid: str):
    lead = lead_or_404(uid)
    body = privacy.export_json(lead, runtime().vault, current_user.actor)
    return Response(body, mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="person-{lead.uid}.json"',
                             "Cache-Control": "no-store"})


@bp.post("/leads/<uid>/correct")
@requires(*SEES_PERSONAL_DATA)
def lead_correct(uid: str):
    rt = runtime()
    lead = lead_or_404(uid)
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
    lead = lead_or_404(uid)
    try:
        privacy.withdraw(lead, request.form.get("purpose", ""), runtime().settings.store_id, current_user.actor)
    except privacy.DeskError:
        abort(400)
    return redirect(url_for("panel.lead_page", uid=uid))


@bp.post("/leads/<uid>/erase")
@requires(*SEES_PERSONAL_DATA)
def lead_erase(uid: str):
    rt = runtime()
    lead = lead_or_404(uid)
    if request.form.get("confirm") != "yes":
        abort(400)
    ips = [d.last_ip for d in Device.select().where(Device.lead == lead)]
    privacy.erase_person(lead, [], rt.gateway, rt.settings.store_id, current_user.actor)
    rt.visitors.online.forget(*ips)
    rt.dashboard.invalidate()
    return redirect(url_for("panel.leads"))
