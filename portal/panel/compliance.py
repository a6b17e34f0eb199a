"""The owner's compliance pack: the record of processing, the impact-assessment dossier, the
register of transfers abroad and the breach register (portal/compliance.py)."""
from __future__ import annotations

import datetime

from flask import Response, redirect, render_template, request, url_for
from flask_login import current_user

from portal import compliance, consent, privacy_record, privacy_record_sources
from portal.core import deadlines
from portal.core.purposes import LANGUAGES
from portal.models import utcnow
from portal.panel import bp, requires, runtime
from portal.policy_texts import DOCUMENTS


def texts_in_force() -> dict[tuple[str, str], str]:
    found = {(doc, lang): consent.current(doc, lang) for doc in DOCUMENTS for lang in LANGUAGES}
    return {key: version.text for key, version in found.items() if version is not None}


@bp.get("/compliance")
@requires("owner")
def compliance_pack():
    rt = runtime()
    settings = rt.settings
    now = utcnow()
    compliance.seal_breaches(rt.vault)  # rows written before migration 0016
    rows = compliance.breaches()
    return render_template("panel/compliance.html", record=privacy_record.render(settings, texts_in_force(), privacy_record_sources.endpoints_in_force()),
                           transfers=compliance.transfers(), platforms=compliance.PLATFORMS, breaches=rows,
                           clocks={b.id: compliance.breach_state(b, now) for b in rows}, now=now,
                           texts={b.id: compliance.breach_texts(b, rt.vault) for b in rows},
                           dpo=settings.dpo_contact, contact=settings.privacy_contact,
                           error=request.args.get("error"))


def _markdown(body: str, name: str) -> Response:
    return Response(body, mimetype="text/markdown",
                    headers={"Content-Disposition": f'attachment; filename="{name}-{utcnow():%Y%m%d}.md"',
                             "Cache-Control": "no-store"})


@bp.get("/compliance/record.md")
@requires("owner")
def compliance_record():
    return _markdown(privacy_record.render(runtime().settings, texts_in_force(), privacy_record_sources.endpoints_in_force()),
                     "record-of-processing")


@bp.get("/compliance/dossier.md")
@requires("owner")
def compliance_dossier():
    return _markdown(compliance.dossier(runtime().settings, texts_in_force()), "impact-assessment")


def _back(action):
    try:
        action()
    except compliance.ComplianceError as exc:
        return redirect(url_for("panel.compliance_pack", error=exc.code))
    return redirect(url_for("panel.compliance_pack"))


@bp.post("/compliance/transfers")
@requires("owner")
def transfer_new():
    f = request.form
    return _back(lambda: compliance.record_transfer(f.get("platform", ""), f.get("recipient", "")[:400],
                                                    f.get("country", "")[:200], f.get("assessed_on", "")[:20],
                                                    f.get("reference", "")[:400], current_user.actor))


@bp.post("/compliance/transfers/<int:row_id>/withdraw")
@requires("owner")
def transfer_withdraw(row_id: int):
    return _back(lambda: compliance.withdraw_transfer(row_id, current_user.actor))


def _local_to_utc(text: str) -> datetime.datetime:
    """A datetime-local field (the store's zone, `store_time_zone`) as naive UTC; now when empty."""
    text = (text or "").strip()
    if not text:
        return utcnow()
    try:
        local = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise compliance.ComplianceError("detected_at") from None
    if local.tzinfo is not None:
        raise compliance.ComplianceError("detected_at")
    return deadlines.to_utc(local, deadlines.zone(runtime().settings.store_time_zone))


@bp.post("/compliance/breaches")
@requires("owner")
def breach_new():
    f = request.form
    return _back(lambda: compliance.record_breach(_local_to_utc(f.get("detected_at", "")[:40]), f.get("description", "")[:4000],
                                                  f.get("data_kinds", "")[:400], f.get("people", "")[:12],
                                                  f.get("measures", "")[:4000], current_user.actor, runtime().vault))


@bp.post("/compliance/breaches/<int:row_id>/reported")
@requires("owner")
def breach_reported(row_id: int):
    return _back(lambda: compliance.report_breach(row_id, request.form.get("reference", "")[:400], current_user.actor))
