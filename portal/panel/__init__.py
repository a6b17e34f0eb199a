"""The manager panel: the store's dashboard, leads, segments, privacy desk and settings.

Answers only on the management networks (`panel_networks`); anything else gets a 404, so a
guest cannot even see that it exists. Roles: owner (everything), manager (leads, segments,
exports, data-subject requests), analyst (aggregates only: never an email or a phone).
"""
from __future__ import annotations

import functools
import ipaddress
import time

from flask import Blueprint, abort, current_app, g, redirect, request, session, url_for
from flask_login import LoginManager, UserMixin, current_user, logout_user
from flask_login.utils import _user_context_processor

from portal.models import AuditLog, Manager

bp = Blueprint("panel", __name__, url_prefix="/panel", template_folder="../templates")
login_manager = LoginManager()
login_manager.login_view = "panel.login"
login_manager.session_protection = "strong"
login_manager.login_message = None
bp.context_processor(_user_context_processor)  # current_user for the panel's templates only (see init_app)

# Who may open what. Analysts see aggregates only.
SEES_PERSONAL_DATA = ("owner", "manager")


class PanelUser(UserMixin):
    def __init__(self, manager: Manager):
        self.manager = manager
        self.id = str(manager.id)
        self.username = manager.username
        self.role = manager.role

    @property
    def actor(self) -> str:
        return f"manager:{self.username}"


@login_manager.user_loader
def load_user(user_id: str) -> PanelUser | None:
    if not user_id.isdigit():
        return None
    manager = Manager.get_or_none(Manager.id == int(user_id))
    return PanelUser(manager) if manager is not None and not manager.disabled else None


def runtime():
    return current_app.extensions["footfall"]


def allowed_network(ip: str, networks: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(cidr.strip(), strict=False) for cidr in networks.split(",") if cidr.strip())


def requires(*roles: str):
    """Only these roles; others get 403 (and the attempt is audited)."""
    def wrap(view):
        @functools.wraps(view)
        def inner(*args, **kwargs):
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if current_user.role not in roles:
                AuditLog.record(current_user.actor, "access_denied", request.path, request.remote_addr)
                abort(403)
            return view(*args, **kwargs)
        return inner
    return wrap


OPEN_ENDPOINTS = {"panel.login", "panel.login_second_factor"}
ENROL_ENDPOINTS = {"panel.setup_2fa", "panel.logout"}


@bp.before_request
def guard():
    settings = runtime().settings
    if not allowed_network(request.remote_addr or "", settings.panel_networks):
        abort(404)
    g.panel = True
    if not current_user.is_authenticated:
        return None
    now = time.time()
    last = session.get("panel_seen", now)
    if now - last > settings.panel_idle_minutes * 60:
        AuditLog.record(current_user.actor, "session_expired", None, request.remote_addr)
        logout_user()
        session.clear()
        return redirect(url_for("panel.login", expired=1))
    session["panel_seen"] = now
    if (settings.panel_require_2fa and not current_user.manager.totp_confirmed
            and request.endpoint not in ENROL_ENDPOINTS | OPEN_ENDPOINTS):
        return redirect(url_for("panel.setup_2fa"))
    return None


def init_app(app) -> None:
    login_manager.init_app(app)
    # flask-login offers current_user to every template; only the panel's need it. Loading it on
    # visitor pages would run session protection on visitors' sessions and send them a stray
    # remember-cookie deletion with every answer.
    app.template_context_processors[None].remove(_user_context_processor)
    from portal.panel import auth, manage, views  # noqa: F401  (register routes)
    app.register_blueprint(bp)
