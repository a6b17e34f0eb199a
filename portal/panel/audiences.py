"""Segments and their exports: the rules, recomputing, and audience files for CRMs and ad platforms."""
from __future__ import annotations

import datetime
import json

from flask import Response, abort, redirect, render_template, request, stream_with_context, url_for
from flask_login import current_user, login_required

from portal import compliance, exports, segments
from portal.core import audience
from portal.models import AuditLog, ExportLog, Segment, utcnow
from portal.panel import SEES_PERSONAL_DATA, bp, requires, runtime
from portal.core.purposes import PURPOSES

RULE_KEYS = (*segments.RULE_FIELDS, *segments.TEXT_FIELDS)

@bp.get("/segments")
@login_required
def segment_list():
    segments = list(Segment.select().order_by(Segment.id))
    # Double opt-in: consenting members an export leaves out because they proved no contact.
    left_out = {s.id: {kind: exports.left_out(s.id, kind) for kind in ("csv", "meta")} for s in segments}
    return render_template("panel/segments.html", segments=segments, left_out=left_out,
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
    if segment is None or kind not in audience.KINDS:
        abort(404)
    # Ad platforms are transfers abroad: refused until the owner records their assessment (issue 15).
    if kind in compliance.EXPORT_PLATFORMS and compliance.transfer_in_force(kind) is None:
        return render_template("panel/refused.html", reason="transfer_unassessed", platform=kind), 409
    # Logged (who, which segment, which platform, which people, which consent versions) before it is sent.
    log, rows = exports.logged_export(segment, kind, runtime().vault, current_user.actor)
    AuditLog.record(current_user.actor, "export", segment.key, request.remote_addr, kind=kind, log=log.id, members=log.members)
    # Named for people: the segment's name, the platform, the store's day (slugified ASCII).
    name = exports.file_name(segment.name, kind, datetime.datetime.now().astimezone().date())
    return Response(stream_with_context(exports.csv_text(rows, kind)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


# -- removal lists (issue 15) ----------------------------------------------------------------------

def _as_of() -> datetime.datetime:
    """The moment a removal list was shown: its download and its "done" cover exactly that list."""
    try:
        as_of = datetime.datetime.fromisoformat(request.values.get("as_of", "")[:32])
    except ValueError:
        abort(400)
    # Naive UTC, as the page wrote it, and not later than now: an offset would compare with nothing
    # (a 500), and a future moment would mark done entries nobody was shown.
    if as_of.tzinfo is not None or as_of > utcnow() + datetime.timedelta(minutes=1):
        abort(400)
    return as_of


@bp.get("/privacy/removals")
@requires(*SEES_PERSONAL_DATA)
def removal_lists():
    vault = runtime().vault
    due = {kind: len(exports.removals(kind, vault)) for kind in audience.KINDS}
    recent = list(ExportLog.select().order_by(ExportLog.id.desc()).limit(50))
    return render_template("panel/removals.html", due=due, kinds=audience.KINDS, recent=recent,
                           as_of=utcnow().isoformat(" "), done=request.args.get("done"))


@bp.get("/privacy/removals/<kind>.csv")
@requires(*SEES_PERSONAL_DATA)
def removal_download(kind: str):
    if kind not in audience.KINDS:
        abort(404)
    as_of = _as_of()
    AuditLog.record(current_user.actor, "removal_list", kind, request.remote_addr, as_of=as_of.isoformat(" "))
    rows = list(exports.removal_rows(kind, runtime().vault, as_of))
    name = f"remove-{kind}-{as_of:%Y%m%d-%H%M%S}.csv"
    return Response(audience.to_csv(rows), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


@bp.post("/privacy/removals/<kind>/done")
@requires(*SEES_PERSONAL_DATA)
def removal_done(kind: str):
    if kind not in audience.KINDS:
        abort(404)
    count = exports.mark_removed(kind, runtime().vault, _as_of(), current_user.actor)
    return redirect(url_for("panel.removal_lists", done=f"{kind}:{count}"))
