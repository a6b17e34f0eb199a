"""The privacy desk: data-subject requests, and one person's copy, correction, withdrawal and erasure."""
from __future__ import annotations

from flask import Response, abort, redirect, render_template, request, url_for
from flask_login import current_user

from portal import jobs, privacy
from portal.models import AuditEntry, DataRequest, Device, Lead, utcnow
from portal.panel import SEES_PERSONAL_DATA, bp, requires, runtime
from portal.panel.leads import lead_or_404


@bp.get("/privacy")
@requires(*SEES_PERSONAL_DATA)
def privacy_desk():
    rt = runtime()
    requests_ = list(DataRequest.select().order_by(DataRequest.status.desc(), DataRequest.due_at).limit(200))
    last = AuditEntry.select().where(AuditEntry.action == "purge").order_by(AuditEntry.id.desc()).first()
    return render_template("panel/privacy.html", requests=requests_, kinds=privacy.REQUEST_KINDS, now=utcnow(),
                           due=privacy.due_for_purge(rt.settings.retention_days), next_purge=jobs.next_run("purge", rt.settings),
                           last_purge=last.at if last else None, retention_days=rt.settings.retention_days,
                           requester=lambda r: rt.vault.decrypt(r.requester_enc, "request.requester"),
                           error=request.args.get("error"))


@bp.post("/privacy/requests")
@requires(*SEES_PERSONAL_DATA)
def request_new():
    rt = runtime()
    lead = None
    uid = request.form.get("lead", "").strip()[:64]
    if uid:
        lead = Lead.get_or_none(Lead.uid == uid)
    try:
        privacy.open_request(request.form.get("kind", ""), utcnow(), rt.settings.dsr_deadline_days, rt.vault,
                             current_user.actor, lead, request.form.get("requester", "")[:200])
    except privacy.DeskError as exc:
        return redirect(url_for("panel.privacy_desk", error=exc.code))
    return redirect(url_for("panel.privacy_desk"))


@bp.post("/privacy/requests/<int:request_id>")
@requires(*SEES_PERSONAL_DATA)
def request_close(request_id: int):
    item = DataRequest.get_or_none(DataRequest.id == request_id) or abort(404)
    try:
        privacy.close_request(item, request.form.get("status", ""), current_user.actor)
    except privacy.DeskError as exc:
        return redirect(url_for("panel.privacy_desk", error=exc.code))
    return redirect(url_for("panel.privacy_desk"))


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
