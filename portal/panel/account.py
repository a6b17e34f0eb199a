"""A manager's own account (their email), and a forgotten password reset by a code sent to it.

The forgot and reset pages are open (no session) and throttled with the login; they answer the
same whether or not the account or the address exists (portal/password_reset.py)."""
from __future__ import annotations

from flask import g, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from portal import accounts, password_reset
from portal.models import Manager
from portal.panel import bp, runtime
from portal.panel.auth import _limited, _lockout


def _resets() -> password_reset.Resets:
    rt = runtime()
    return password_reset.Resets(rt.vault, rt.visitors.contacts.dispatcher, rt.settings.store_name)


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account():
    rt = runtime()
    manager = Manager.get_by_id(current_user.manager.id)
    error = saved = None
    if request.method == "POST":
        if _limited():
            return render_template("panel/account.html", email=password_reset.email_of(manager, rt.vault),
                                   error="err_rate_limited"), 429
        max_failures, lockout = _lockout()
        try:
            password_reset.set_email(manager, rt.vault, request.form.get("email", "")[:254],
                                     request.form.get("password", "")[:256], request.remote_addr, max_failures, lockout)
        except accounts.AccountError as exc:
            error = "err_" + exc.code
        else:
            return redirect(url_for("panel.account", saved=1))
        manager = Manager.get_by_id(manager.id)
    saved = request.args.get("saved") == "1"
    return render_template("panel/account.html", email=password_reset.email_of(manager, rt.vault), error=error,
                           saved=saved), 422 if error else 200


@bp.route("/login/forgot", methods=["GET", "POST"])
def forgot_password():
    if current_user.is_authenticated:
        return redirect(url_for("panel.account"))
    if request.method == "GET":
        return render_template("panel/forgot.html")
    if _limited():
        return render_template("panel/forgot.html", error="err_rate_limited"), 429
    ticket = _resets().request(request.form.get("who", "")[:254], request.remote_addr, g.get("lang", "vi"))
    return render_template("panel/reset.html", ticket=ticket)


@bp.post("/login/reset")
def reset_password():
    if _limited():
        return render_template("panel/reset.html", ticket=request.form.get("ticket", "")[:64],
                               error="err_rate_limited"), 429
    ticket = request.form.get("ticket", "")[:64]
    password = request.form.get("password", "")[:257]
    if password != request.form.get("password2", "")[:257]:
        return render_template("panel/reset.html", ticket=ticket, error="err_passwords_differ"), 422
    try:
        _resets().reset(ticket, request.form.get("code", "")[:32], password, request.remote_addr)
    except accounts.AccountError as exc:
        error = "err_reset_code_invalid" if exc.code == "code_invalid" else "err_" + exc.code
        return render_template("panel/reset.html", ticket=ticket, error=error), 422
    return redirect(url_for("panel.login", reset=1))
