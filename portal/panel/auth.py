"""Signing in to the panel: password, then TOTP (or a recovery code); enrolment; signing out."""
from __future__ import annotations

import datetime

import segno
from flask import redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from portal import accounts
from portal.models import AuditLog, Manager
from portal.panel import PanelUser, bp, runtime


def _lockout():
    s = runtime().settings
    return s.login_max_failures, datetime.timedelta(minutes=s.login_lockout_minutes)


def _limited() -> bool:
    return not runtime().limiter.allow(f"panel-login:{request.remote_addr}")


def _finish_login(manager: Manager):
    session.pop("pending_2fa", None)
    session.pop("pending_at", None)
    login_user(PanelUser(manager))
    session["panel_seen"] = datetime.datetime.now().timestamp()
    AuditLog.record(f"manager:{manager.username}", "login", manager.username, request.remote_addr)
    return redirect(url_for("panel.dashboard"))


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("panel.dashboard"))
    error = None
    if request.method == "POST":
        if _limited():
            return render_template("panel/login.html", error="err_rate_limited"), 429
        max_failures, lockout = _lockout()
        try:
            manager = accounts.authenticate(request.form.get("username", "")[:64], request.form.get("password", "")[:256],
                                            request.remote_addr, max_failures, lockout)
        except accounts.AccountError as exc:
            error = "err_login_" + exc.code
        else:
            if manager.totp_confirmed:
                session["pending_2fa"], session["pending_at"] = manager.id, datetime.datetime.now().timestamp()
                return redirect(url_for("panel.login_second_factor"))
            return _finish_login(manager)
    return render_template("panel/login.html", error=error, expired=request.args.get("expired")), 401 if error else 200


@bp.route("/login/code", methods=["GET", "POST"])
def login_second_factor():
    manager_id = session.get("pending_2fa")
    started = session.get("pending_at", 0)
    if not manager_id or datetime.datetime.now().timestamp() - started > 300:
        session.pop("pending_2fa", None)
        return redirect(url_for("panel.login"))
    manager = Manager.get_or_none(Manager.id == manager_id)
    if manager is None or manager.disabled:
        return redirect(url_for("panel.login"))
    error = None
    if request.method == "POST":
        max_failures, lockout = _lockout()
        if _limited() or accounts.is_locked(manager):
            error = "err_login_locked"
        elif accounts.verify_second_factor(manager, runtime().vault, request.form.get("code", "")[:32], request.remote_addr):
            return _finish_login(manager)
        else:
            accounts.register_failure(manager, request.remote_addr, "2fa_failed", max_failures, lockout)
            error = "err_code_invalid"
    return render_template("panel/code.html", error=error), 401 if error else 200


@bp.route("/2fa", methods=["GET", "POST"])
@login_required
def setup_2fa():
    rt = runtime()
    manager = Manager.get_by_id(current_user.manager.id)
    error = None
    if request.method == "POST":
        try:
            codes = accounts.confirm_totp(manager, rt.vault, request.form.get("code", "")[:16], request.remote_addr)
        except accounts.AccountError:
            error = "err_code_invalid"
        else:
            return render_template("panel/recovery.html", codes=codes)
    elif manager.totp_confirmed:
        # Enrolled: the secret is never shown again (a reset goes through `footfall manager reset-password --reset-2fa`).
        return render_template("panel/setup_2fa.html", enrolled=True, qr=None, secret="", error=None)
    elif not manager.totp_secret_enc:
        accounts.start_totp(manager, rt.vault)  # once: a reload keeps the secret already scanned
    uri = accounts.totp_uri(manager, rt.vault, rt.settings.store_name)
    secret = uri.split("secret=")[1].split("&")[0] if uri else ""
    qr = segno.make(uri, error="m").svg_data_uri(scale=4) if uri else None
    return render_template("panel/setup_2fa.html", qr=qr, secret=secret, error=error, enrolled=False), 422 if error else 200


@bp.post("/logout")
@login_required
def logout():
    AuditLog.record(current_user.actor, "logout", current_user.username, request.remote_addr)
    logout_user()
    session.clear()
    return redirect(url_for("panel.login"))
