"""Signing in to the panel: password, then TOTP (or a recovery code); enrolment; signing out.

The login throttle is the app limiter's "panel-login" bucket, keyed on the peer address (what a
client cannot choose); a flood of other keys never frees a blocked address (portal/ratelimit.py).
"""
from __future__ import annotations

import datetime
import logging

from flask import redirect, render_template, request, session, url_for
from flask_login import current_user, login_required

from portal import accounts, clock, manager_sessions
from portal.db import database
from portal.models import AuditLog, Manager
from portal.panel import COOKIE, bp, idle, runtime, set_cookie

logger = logging.getLogger(__name__)

LOGIN_BUCKET = "panel-login"


def configure_throttle(rt) -> None:
    """Create (or, after a settings change, resize) the login throttle's own bucket."""
    rt.limiter.bucket(LOGIN_BUCKET, rt.settings.rate_limit_count, rt.settings.rate_limit_window, fail_closed=True)


def _lockout():
    s = runtime().settings
    return s.login_max_failures, datetime.timedelta(minutes=s.login_lockout_minutes)


def _limited() -> bool:
    return not runtime().limiter.bucket(LOGIN_BUCKET).allow(request.remote_addr or "")


def _signed_in(manager: Manager, token: str):
    set_cookie(token)
    session.pop("pending_2fa", None)  # left by an older version's signed cookie
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
            stage = manager_sessions.CODE if manager.totp_confirmed else manager_sessions.FULL
            with database.atomic():  # one commit (one fsync) for the three writes
                manager_sessions.prune(idle())
                token = manager_sessions.start(manager, stage, request.remote_addr)
                if stage == manager_sessions.FULL:
                    AuditLog.record(f"manager:{manager.username}", "login", manager.username, request.remote_addr)
            if stage == manager_sessions.CODE:
                set_cookie(token)
                return redirect(url_for("panel.login_second_factor"))
            return _signed_in(manager, token)
    return render_template("panel/login.html", error=error, expired=request.args.get("expired")), 401 if error else 200


@bp.route("/login/code", methods=["GET", "POST"])
def login_second_factor():
    pending = manager_sessions.lookup(request.cookies.get(COOKIE), manager_sessions.CODE, idle())
    if pending.session_id is None:
        if COOKIE in request.cookies:
            set_cookie(None)
        return redirect(url_for("panel.login"))
    manager = pending.manager
    error = None
    if request.method == "POST":
        max_failures, lockout = _lockout()
        ip = request.remote_addr
        if _limited() or accounts.is_locked(manager):
            error = "err_login_locked"
        elif accounts.verify_second_factor(manager, runtime().vault, request.form.get("code", "")[:32], ip):
            token = manager_sessions.promote(pending.session_id, manager, ip) if accounts.second_factor_passed(manager) else None
            if token is not None:
                AuditLog.record(f"manager:{manager.username}", "login", manager.username, ip)
                return _signed_in(manager, token)
            error = "err_login_locked"
        elif accounts.register_failure(manager, ip, "2fa_failed", max_failures, lockout, accounts.SECOND_FACTOR):
            error = _code_error()
        else:
            error = "err_login_locked"
    return render_template("panel/code.html", error=error), 401 if error else 200


def _code_error() -> str:
    """A wrong TOTP code, or a clock that cannot check one: a Raspberry Pi without NTP yet lives
    in the past, and every right code looks wrong. Say which (and log it), never just "wrong"."""
    data_dir = runtime().settings.data_dir
    if clock.untrustworthy(data_dir):
        time_state = clock.state(data_dir)
        logger.warning("a TOTP code failed while the clock is wrong (%s UTC, last good %s)",
                       time_state["now"], time_state["last_good"])
        return "err_code_clock"
    return "err_code_invalid"


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
            error = _code_error()
        else:
            return render_template("panel/recovery.html", codes=codes)
    elif manager.totp_confirmed:
        # Enrolled: the secret is never shown again (a reset goes through `footfall manager reset-password --reset-2fa`).
        return render_template("panel/setup_2fa.html", enrolled=True, qr=None, secret="", error=None)
    elif not manager.totp_secret_enc:
        accounts.start_totp(manager, rt.vault)  # once: a reload keeps the secret already scanned
    uri = accounts.totp_uri(manager, rt.vault, rt.settings.store_name)
    secret = uri.split("secret=")[1].split("&")[0] if uri else ""
    import segno  # only the enrolment page draws a QR code: not loaded by every portal

    qr = segno.make(uri, error="m").svg_data_uri(scale=4) if uri else None
    return render_template("panel/setup_2fa.html", qr=qr, secret=secret, error=error, enrolled=False), 422 if error else 200


@bp.post("/logout")
@login_required
def logout():
    """Signing out ends every session of this account, on every device, for good."""
    ended = manager_sessions.end_all(current_user.manager.id)
    AuditLog.record(current_user.actor, "logout", current_user.username, request.remote_addr, sessions_ended=ended)
    session.clear()
    set_cookie(None)
    return redirect(url_for("panel.login"))
