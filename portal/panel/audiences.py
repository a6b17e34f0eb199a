"""Segments and their exports: the rules, recomputing, and audience files for CRMs and ad platforms."""
from __future__ import annotations

import json

from flask import Response, abort, redirect, render_template, request, stream_with_context, url_for
from flask_login import current_user, login_required

from portal import compliance, exports, segments
from portal.core import audience
from portal.models import AuditLog, Segment, utcnow
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
    AuditLog.record(current_user.actor, "export", segment.key, request.remote_addr, kind=kind)
    rows = exports.export_rows(segment.id, kind, runtime().vault)
    name = f"{segment.key}-{kind}-{utcnow():%Y%m%d}.csv"
    return Response(stream_with_context(audience.to_csv(rows)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})
