"""Managers' accounts and the audit log (owner only)."""
from __future__ import annotations

from flask import abort, redirect, render_template, request, url_for
from flask_login import current_user

from portal import accounts
from portal.models import AuditEntry, Manager
from portal.core.numbers import INT64_MAX, NumberError, parse_int
from portal.panel import bp, requires


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


@bp.post("/users/<int:manager_id>/password")
@requires("owner")
def user_password(manager_id: int):
    """The owner sets a temporary password for a manager who forgot theirs (the second factor stays)."""
    manager = Manager.get_or_none(Manager.id == manager_id) or abort(404)
    if manager.id == current_user.manager.id:
        abort(400)  # one's own: through the account page or the forgotten-password code
    password = request.form.get("password", "")[:257]
    try:
        if password != request.form.get("password2", "")[:257]:
            raise accounts.AccountError("passwords_differ")
        accounts.set_password(manager, password, actor=current_user.actor)
    except accounts.AccountError as exc:
        return render_template("panel/users.html", managers=list(Manager.select().order_by(Manager.id)),
                               error="err_" + exc.code, roles=accounts.ROLES), 422
    return redirect(url_for("panel.users", reset=manager.username))
