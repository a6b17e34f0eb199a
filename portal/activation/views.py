"""The public unsubscribe page: /u/<token>. GET shows what it will do and a button; POST (the
button, or a mail client's RFC 8058 one-click `List-Unsubscribe=One-Click`) withdraws. No session,
no CSRF token: the signed token is the authority, and it can only withdraw."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template, request

from portal.activation import unsubscribe

bp = Blueprint("activation_public", __name__, template_folder="../templates")


def _rt():
    return current_app.extensions["footfall"]


@bp.route("/u/<token>", methods=["GET", "POST"])
def unsubscribe_page(token: str):
    rt = _rt()
    target = unsubscribe.find(rt.vault, token[:64])
    if target is None:
        return render_template("captive/error.html", message="unsub_unknown", code=404), 404
    if request.method == "POST":
        unsubscribe.withdraw(target, rt.settings.store_id, request.remote_addr)
        return render_template("captive/unsubscribe.html", done=True, purpose=target.purpose, token=token)
    return render_template("captive/unsubscribe.html", done=False, purpose=target.purpose, token=token)


def init_app(app) -> None:
    from portal.app import csrf
    csrf.exempt(unsubscribe_page)
    app.register_blueprint(bp)
