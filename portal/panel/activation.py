"""Activation in the panel: automations and campaigns (owners and managers edit, analysts see
results only), the preview, the send log (recipients masked), the till's "redeem a code" page (unknown
codes throttled per account) and the best customers by spend (RFM)."""
from __future__ import annotations

import json

from flask import abort, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from werkzeug.datastructures import MultiDict

from portal.activation import results, texts, vouchers
from portal.activation.models import KINDS, ActivationSend, Automation, SendAttempt
from portal.core.numbers import INT64_MAX, NumberError, parse_int
from portal.core.purposes import LANGUAGES
from portal.messages import CHANNELS
from portal.models import AuditLog, Lead, Segment
from portal.panel import SEES_PERSONAL_DATA, bp, requires, runtime

EDITORS = ("owner", "manager")
LOG_PAGE = 100
# Guessing at the till: unknown codes per account (not per address: two tills share a NAT) within
# the window; then every code is refused until the window passes. A cashier mistypes a few; a
# walk through the code space, to burn or cash other people's vouchers, stops here.
TILL_BUCKET, TILL_GUESSES, TILL_WINDOW = "till-guesses", 20, 15 * 60


def _automation_or_404(uid: str) -> Automation:
    found = Automation.get_or_none(Automation.uid == uid[:64])
    if found is None:
        abort(404)
    return found


@bp.get("/activation")
@login_required
def activation_list():
    autos = list(Automation.select().order_by(Automation.id.desc()))
    return render_template("panel/activation/list.html", autos=autos, results={a.id: results.cached(a.id, a.uid) for a in autos},
                           kinds=KINDS, editor=current_user.role in EDITORS, tz=texts.store_tz(runtime().settings))


def _form_page(auto: Automation | None, form: MultiDict, error: str | None = None, previews=None, status: int = 200):
    field, _, reason = (error or "").partition(":")
    lang = field[-2:] if field[-3:] in ("_vi", "_en") else ""
    if field == "launched":
        field, reason = "", "launched"
    return render_template("panel/activation/edit.html", auto=auto, form=form, error=error, previews=previews,
                           error_field=field[:-3] if lang else field, error_lang=lang, error_reason=reason or "field",
                           kinds=KINDS, channels=CHANNELS, languages=LANGUAGES, placeholders=texts.PLACEHOLDERS,
                           segments=list(Segment.select().order_by(Segment.id))), status


def _form_of(auto: Automation) -> MultiDict:
    """The saved automation as the form's fields."""
    opts, form = auto.opts, MultiDict({"kind": auto.kind, "name": auto.name})
    for key in ("delay_hours", "nth", "lapsed_days", "voucher_days", "review_link", "zalo_template", "segment"):
        if opts.get(key) not in (None, ""):
            form[key] = str(opts[key])
    if opts.get("repeat"):
        form["repeat"] = "yes"
    if opts.get("send_at"):
        import datetime
        at = datetime.datetime.fromisoformat(opts["send_at"]).replace(tzinfo=datetime.timezone.utc)
        form["send_at"] = at.astimezone(texts.store_tz(runtime().settings)).strftime("%Y-%m-%dT%H:%M")
    form.setlist("channels", auto.channel_list)
    for channel, by_lang in auto.text_map.items():
        for lang, entry in by_lang.items():
            if channel == "email":
                form[f"email_subject_{lang}"], form[f"email_text_{lang}"] = entry["subject"], entry["text"]
            elif channel == "sms":
                form[f"sms_text_{lang}"] = entry["text"]
            else:
                form[f"zalo_params_{lang}"] = "\n".join(f"{k}={v}" for k, v in entry["params"].items())
    return form


def _previews(auto: Automation) -> list:
    settings = runtime().settings
    tz = texts.store_tz(settings)
    values = texts.sample_values(settings.store_name, auto.opts, tz)
    return [(channel, lang, texts.render(auto, channel, lang, values)) for channel in auto.channel_list for lang in LANGUAGES]


def _clean(form) -> texts.Cleaned:
    cleaned = texts.clean(form, texts.store_tz(runtime().settings))
    segment = cleaned.options.get("segment")
    if segment and not Segment.select().where(Segment.key == segment).exists():
        raise texts.FormError("segment")
    return cleaned


@bp.route("/activation/new", methods=["GET", "POST"])
@requires(*EDITORS)
def activation_new():
    if request.method == "GET":
        kind = request.args.get("kind", "first_visit")
        return _form_page(None, MultiDict({"kind": kind if kind in KINDS else "first_visit", "voucher_days": "0"}))
    return _submit(None)


@bp.route("/activation/<uid>", methods=["GET", "POST"])
@requires(*EDITORS)
def activation_edit(uid: str):
    auto = _automation_or_404(uid)
    if request.method == "GET":
        return _form_page(auto, _form_of(auto), previews=_previews(auto))
    return _submit(auto)


def _submit(auto: Automation | None):
    try:
        cleaned = _clean(request.form)
    except texts.FormError as exc:
        return _form_page(auto, request.form, error=exc.field, status=400)
    if request.form.get("action") == "preview":  # render without saving
        draft = Automation(kind=cleaned.kind, name=cleaned.name, channels=",".join(cleaned.channels),
                           options=json.dumps(cleaned.options), texts=json.dumps(cleaned.texts))
        return _form_page(auto, request.form, previews=_previews(draft))
    if auto is not None and auto.kind == "campaign" and auto.launched_at is not None:
        return _form_page(auto, request.form, error="launched", status=400)
    saved = texts.save(cleaned, current_user.actor, auto)
    AuditLog.record(current_user.actor, "automation_saved", saved.uid, request.remote_addr, kind=saved.kind,
                    channels=saved.channels)
    return redirect(url_for("panel.activation_edit", uid=saved.uid, saved=1))


@bp.post("/activation/<uid>/switch")
@requires(*EDITORS)
def activation_switch(uid: str):
    auto = _automation_or_404(uid)
    on = request.form.get("on") == "1"
    Automation.update(enabled=on).where(Automation.id == auto.id).execute()
    AuditLog.record(current_user.actor, "automation_on" if on else "automation_off", auto.uid, request.remote_addr)
    return redirect(url_for("panel.activation_list"))


@bp.get("/activation/log")
@requires(*SEES_PERSONAL_DATA)
def activation_log():
    before = request.args.get("before", "")
    select = (SendAttempt.select(SendAttempt, ActivationSend, Automation).join(ActivationSend).join(Automation)
              .order_by(SendAttempt.id.desc()))
    if before:
        try:
            select = select.where(SendAttempt.id < parse_int(before, 0, INT64_MAX))
        except NumberError:
            abort(400)
    rows = list(select.limit(LOG_PAGE + 1))
    return render_template("panel/activation/log.html", rows=rows[:LOG_PAGE],
                           more=rows[LOG_PAGE - 1].id if len(rows) > LOG_PAGE else None)


@bp.route("/till", methods=["GET", "POST"])
@requires(*EDITORS)
def till():
    if request.method == "GET":
        return render_template("panel/activation/till.html", outcome=None, error=None)
    typed = request.form.get("code", "")
    guesses = runtime().limiter.bucket(TILL_BUCKET, TILL_GUESSES, TILL_WINDOW, max_keys=1000)
    if guesses.blocked(current_user.actor):
        return render_template("panel/activation/till.html", outcome=None, error="throttled", used_at=None,
                               code=""), 429
    try:
        amount = vouchers.parse_amount(request.form.get("amount", ""))
        done = vouchers.redeem(typed, amount, current_user.actor)
    except vouchers.VoucherError as exc:
        if exc.code == "unknown" and guesses.allow(current_user.actor) and guesses.blocked(current_user.actor):
            AuditLog.record(current_user.actor, "till_throttled", None, request.remote_addr)  # once, as it blocks
        return render_template("panel/activation/till.html", outcome=None, error=exc.code, used_at=exc.used_at,
                               code=vouchers.normalize(typed)[:8]), 400 if exc.code == "amount" else 409 if exc.code == "used" else 404
    return render_template("panel/activation/till.html", outcome=done, error=None, code=vouchers.display(done.code))


@bp.get("/activation/customers")
@requires(*SEES_PERSONAL_DATA)
def activation_customers():
    rows = results.rfm()
    leads = {lead.id: lead for lead in Lead.select().where(Lead.id.in_([r.lead_id for r in rows]))} if rows else {}
    return render_template("panel/activation/customers.html", rows=rows, leads=leads)
