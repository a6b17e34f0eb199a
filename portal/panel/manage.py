"""Panel pages: segments and exports, the privacy desk, the audit log, settings and users."""
from __future__ import annotations

import dataclasses
import json

from flask import Response, abort, redirect, render_template, request, stream_with_context, url_for
from flask_login import current_user, login_required

from portal import accounts, consent, exports, jobs, privacy, segments, store_settings
from portal.numbers import INT64_MAX, NumberError, is_ascii_digits, parse_int
from portal.models import AuditEntry, AuditLog, DataRequest, Lead, Manager, Segment, utcnow
from portal.panel import SEES_PERSONAL_DATA, bp, requires, runtime
from portal.panel.auth import configure_throttle
from portal.policy_texts import DOCUMENTS, PURPOSES

RULE_KEYS = (*segments.RULE_FIELDS, *segments.TEXT_FIELDS)


# -- segments ------------------------------------------------------------------------------------

@bp.get("/segments")
@login_required
def segment_list():
    return render_template("panel/segments.html", segments=list(Segment.select().order_by(Segment.id)),
                           rules={s.id: json.loads(s.rule) for s in Segment.select()}, rule_keys=RULE_KEYS,
                           purposes=PURPOSES, error=request.args.get("error"))


@bp.post("/segments/recompute")
@requires(*SEES_PERSONAL_DATA)
def segment_recompute():
    counts = segments.recompute()
    AuditLog.record(current_user.actor, "segments_recomputed", None, request.remote_addr, **counts)
    return redirect(url_for("panel.segment_list"))


def _rule_from_form() -> dict:
    return {key: request.form.get(key, "").strip() for key in RULE_KEYS}


@bp.post("/segments/new")
@requires(*SEES_PERSONAL_DATA)
def segment_new():
    try:
        segment = segments.save_custom(request.form.get("name", ""), _rule_from_form())
    except segments.RuleError as exc:
        return redirect(url_for("panel.segment_list", error=exc.code))
    AuditLog.record(current_user.actor, "segment_created", segment.key, request.remote_addr, rule=json.loads(segment.rule))
    return redirect(url_for("panel.segment_list"))


@bp.post("/segments/<key>/thresholds")
@requires("owner")
def segment_thresholds(key: str):
    try:
        segment = segments.update_builtin(key[:64], _rule_from_form())
    except Segment.DoesNotExist:
        abort(404)
    except segments.RuleError as exc:
        return redirect(url_for("panel.segment_list", error=exc.code))
    AuditLog.record(current_user.actor, "segment_thresholds_changed", key, request.remote_addr, rule=json.loads(segment.rule))
    return redirect(url_for("panel.segment_list"))


@bp.get("/segments/<key>/export/<kind>")
@requires(*SEES_PERSONAL_DATA)
def segment_export(key: str, kind: str):
    segment = Segment.get_or_none(Segment.key == key[:64])
    if segment is None or kind not in exports.KINDS:
        abort(404)
    AuditLog.record(current_user.actor, "export", segment.key, request.remote_addr, kind=kind)
    rows = exports.export_rows(segment.id, kind, runtime().vault)
    name = f"{segment.key}-{kind}-{utcnow():%Y%m%d}.csv"
    return Response(stream_with_context(exports.to_csv(rows)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


# -- privacy desk ----------------------------------------------------------------------------------

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


# -- audit, users, settings (owner) ------------------------------------------------------------

@bp.get("/audit")
@requires("owner")
def audit():
    before = request.args.get("before", "")
    select = AuditEntry.select().order_by(AuditEntry.id.desc())
    if before:
        try:
            select = select.where(AuditEntry.id < parse_int(before, 0, INT64_MAX))
        except NumberError:
            abort(400)
    entries = list(select.limit(100))
    return render_template("panel/audit.html", entries=entries, before=entries[-1].id if len(entries) == 100 else None)


@bp.route("/users", methods=["GET", "POST"])
@requires("owner")
def users():
    error = None
    if request.method == "POST":
        try:
            accounts.create_manager(request.form.get("username", "")[:64], request.form.get("password", "")[:256],
                                    request.form.get("role", ""), actor=current_user.actor)
        except accounts.AccountError as exc:
            error = "err_" + exc.code
        else:
            return redirect(url_for("panel.users"))
    return render_template("panel/users.html", managers=list(Manager.select().order_by(Manager.id)), error=error,
                           roles=accounts.ROLES), 422 if error else 200


@bp.post("/users/<int:manager_id>/access")
@requires("owner")
def user_access(manager_id: int):
    """Disable an account (staff who left) or enable it again; never one's own."""
    manager = Manager.get_or_none(Manager.id == manager_id) or abort(404)
    if manager.id == current_user.manager.id:
        abort(400)
    accounts.set_disabled(manager, request.form.get("disabled") == "yes", current_user.actor, request.remote_addr)
    return redirect(url_for("panel.users"))


@bp.route("/settings", methods=["GET", "POST"])
@requires("owner")
def settings_page():
    rt = runtime()
    error, saved = None, False
    if request.method == "POST":
        form = request.form
        changes = {name: form[name] for name in store_settings.EDITABLE if name in form and form[name].strip()}
        if "session_minutes" in form and form["session_minutes"].strip():
            minutes = form["session_minutes"].strip()
            changes["session_seconds"] = str(int(minutes) * 60) if is_ascii_digits(minutes, 6) else "x"
        try:
            store_settings.save(changes, current_user.actor)
            for document in DOCUMENTS:
                for language in consent.LANGUAGES:
                    text = form.get(f"text-{document}-{language}")
                    if text is not None and text.strip():
                        _publish(document, language, text)
        except store_settings.SettingError as exc:
            error = exc.field
        else:
            saved = True
            _reload(rt)
    return render_template("panel/settings.html", s=runtime().settings, error=error, saved=saved,
                           texts={(d, lang): consent.current(d, lang) for d in DOCUMENTS for lang in consent.LANGUAGES},
                           documents=DOCUMENTS, languages=consent.LANGUAGES), 422 if error else 200


def _publish(document: str, language: str, text: str) -> None:
    text = "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n")).strip()
    if len(text) > 20000:
        raise store_settings.SettingError(f"text-{document}-{language}")
    before = consent.current(document, language)
    version = consent.publish(document, language, text)
    if before is None or version.id != before.id:
        AuditLog.record(current_user.actor, "policy_published", f"{document}/{language}", request.remote_addr,
                        sha256=version.sha256)


@bp.post("/settings/logo")
@requires("owner")
def settings_logo():
    upload = request.files.get("logo")
    try:
        store_settings.save_logo(upload.read(store_settings.LOGO_MAX + 1) if upload else b"",
                                 runtime().settings.data_dir, current_user.actor)
    except store_settings.SettingError:
        return render_template("panel/settings.html", s=runtime().settings, error="logo", saved=False,
                               texts={(d, lang): consent.current(d, lang) for d in DOCUMENTS for lang in consent.LANGUAGES},
                               documents=DOCUMENTS, languages=consent.LANGUAGES), 422
    return redirect(url_for("panel.settings_page"))


def _reload(rt) -> None:
    """Apply saved settings to this running portal (other processes read them at start)."""
    from flask import current_app

    settings = store_settings.apply(rt.settings)
    rt.visitors.settings = settings
    current_app.extensions["footfall"] = dataclasses.replace(rt, settings=settings)
    configure_throttle(current_app.extensions["footfall"])
