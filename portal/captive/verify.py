"""Proving an email or a phone on the visitor pages (issue 11): the code page, resending by another
channel, a code to the record's own contact from "my data", and the download that needs a proof.
The domain is portal/contacts.py; the session keeps claim uids and proofs (never a contact)."""
from __future__ import annotations

import json

from flask import Response, redirect, render_template, request, session, url_for

from portal.captive import bp
from portal.captive.views import client, finish, limited, rate_limited_page, runtime
from portal.contacts import channels
from portal.models import utcnow
from portal.verification import VerificationError

PROOF_SECONDS = 1800   # how long a proof entered in this browser session opens "my data"
MAX_PENDING = 4


def proven() -> set[str]:
    """Records this browser session proved control of, on this device, recently."""
    c = client()
    now = utcnow().timestamp()
    return {p[0] for p in session.get("proven", []) if isinstance(p, list) and len(p) == 3
            and p[1] == c.mac and now - float(p[2]) < PROOF_SECONDS}


def remember_claims(outcome) -> None:
    claims = [u for u in session.get("claims", []) if u not in outcome.claims] + list(outcome.claims)
    session["claims"] = claims[-MAX_PENDING:]
    sent = dict(session.get("sent", {}))
    if outcome.sent is not None:
        sent[outcome.sent.claim] = [outcome.sent.channel, outcome.sent.message_id]
    session["sent"] = {k: v for k, v in sent.items() if k in session["claims"]}
    if outcome.send_error:
        session["send_error"] = "v_" + outcome.send_error


def pending_claims() -> list[dict]:
    """This session's open claims, as the code form shows them."""
    rt = runtime()
    c = client()
    views = []
    for uid in session.get("claims", []):
        row = rt.visitors.contacts.pending(str(uid), c.mac)
        if row is None:
            continue
        channel, message_id = (session.get("sent", {}).get(row.uid) or [None, None])[:2]
        delivery = rt.visitors.contacts.delivery(message_id)
        if not channel and not channels(rt.settings, row.kind):
            continue  # nothing was, nor can be, sent that way: no card with nothing to do
        described = rt.visitors.contacts.describe(row, channel or "", message_id)
        views.append({"uid": row.uid, "kind": row.kind, "masked": described.masked, "channel": channel,
                      "state": delivery.state if delivery else ("sent" if channel else "not_sent"),
                      "options": channels(rt.settings, row.kind)})
    return sorted(views, key=lambda v: v["state"] == "not_sent")  # the code on its way first


def verify_context(error: str | None = None) -> dict:
    return {"pending": pending_claims(), "verify_error": error or session.pop("send_error", None),
            "verify_first": bool(session.get("verify_next") is not None or _waiting_offline())}


def _waiting_offline() -> bool:
    return runtime().visitors.online_until(client().ip) is None and bool(session.get("claims"))


def _status(exc: VerificationError) -> int:
    return 429 if exc.code.startswith(("limit", "cooldown")) else 409 if exc.code == "not_found" else 422


@bp.get("/verify")
def verify_page():
    ctx = verify_context()
    if not ctx["pending"]:
        return redirect(url_for("captive.online"), code=303)
    return render_template("captive/verify.html", back=request.args.get("back") == "my-data", **ctx)


@bp.post("/verify")
def verify():
    if limited():
        return rate_limited_page()
    claim = request.form.get("claim", "")
    if claim not in session.get("claims", []):
        return render_template("captive/verify.html", back=False, **verify_context("v_not_found")), 422
    try:
        lead, outcome = runtime().visitors.verify(claim, request.form.get("code", ""), client())
    except VerificationError as exc:
        return render_template("captive/verify.html", back=request.form.get("back") == "my-data",
                               **verify_context("v_" + exc.code)), 422
    c = client()
    session["proven"] = [p for p in session.get("proven", []) if isinstance(p, list)][-3:] + [
        [lead.uid, c.mac, utcnow().timestamp()]]
    session["claims"] = [u for u in session.get("claims", []) if u != claim]
    session["verified_notice"] = True
    if not outcome.ok:
        return render_template("captive/error.html", message="err_gateway_failed", code=503), 503
    if request.form.get("back") == "my-data":
        return redirect(url_for("captive.my_data"), code=303)
    if "verify_next" in session:
        return finish(session.pop("verify_next"))
    return redirect(url_for("captive.online"), code=303)


@bp.post("/verify/send")
def verify_send():
    """Send a code again, or by the other channel (Zalo instead of SMS)."""
    if limited():
        return rate_limited_page()
    claim = request.form.get("claim", "")
    back = request.form.get("back") == "my-data"
    if claim not in session.get("claims", []):
        return render_template("captive/verify.html", back=back, **verify_context("v_not_found")), 422
    channel = request.form.get("channel") or None
    try:
        sent = runtime().visitors.send_code(claim, client(), channel)
    except VerificationError as exc:
        return render_template("captive/verify.html", back=back, **verify_context("v_" + exc.code)), _status(exc)
    session["sent"] = {**session.get("sent", {}), sent.claim: [sent.channel, sent.message_id]}
    return redirect(url_for("captive.verify_page", **({"back": "my-data"} if back else {})), code=303)


@bp.post("/my-data/prove")
def prove():
    """Prove control of the record's email or phone: a code to it (its address never shown)."""
    if limited():
        return rate_limited_page()
    try:
        uid = runtime().visitors.claim_from_record(client(), request.form.get("kind", ""))
        sent = runtime().visitors.send_code(uid, client())
    except VerificationError as exc:
        return render_template("captive/error.html", message="err_v_" + exc.code, code=_status(exc)), _status(exc)
    session["claims"] = ([u for u in session.get("claims", [])] + [uid])[-MAX_PENDING:]
    session["sent"] = {**session.get("sent", {}), uid: [sent.channel, sent.message_id]}
    return redirect(url_for("captive.verify_page", back="my-data"), code=303)


@bp.get("/my-data/download")
def download():
    data = runtime().visitors.export(client(), proven())
    if data is None:
        return redirect(url_for("captive.my_data", done="prove_first"), code=303)
    body = json.dumps(data, ensure_ascii=False, indent=2)
    return Response(body, mimetype="application/json", headers={
        "Content-Disposition": "attachment; filename=my-data.json", "Cache-Control": "no-store"})
