"""The manager panel: the store's dashboard, leads, segments, privacy desk and settings.

Answers only on the management networks (`panel_networks`); anything else gets a 404, so a
guest cannot even see that it exists (portal/panel/fence.py). Sessions live on the server
(portal/manager_sessions.py); the panel's cookie carries only a session's random token. Roles: owner (everything), manager (leads, segments,
exports, data-subject requests), analyst (aggregates only: never an email or a phone).

One module per thing a manager does: auth (login, 2FA, logout), dashboard, leads (list and one
person), audiences (segments and exports), privacy_desk (requests, a person's copy, correction,
withdrawal, restriction, erasure), account (own email, forgotten password), compliance (the owner's pack: records, transfers, breaches), settings (store settings, policy texts, logo), splash (the sign-in page's look), users (accounts, audit log), webhooks (the CRM's endpoints, dead letters),
health, activation (automations, campaigns, the till). This file holds what they share: the blueprint, sessions, roles and the network lock.
"""
from __future__ import annotations

import datetime
import functools

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, url_for
from flask_login import LoginManager, UserMixin, current_user
from flask_login.utils import _user_context_processor

from portal import manager_sessions
from portal.guards import BadParameters
from portal.models import AuditLog, Manager
from portal.panel.fence import allowed_network, from_panel_network  # noqa: F401  (allowed_network: this package's interface)

bp = Blueprint("panel", __name__, url_prefix="/panel", template_folder="../templates")
login_manager = LoginManager()
login_manager.login_view = "panel.login"
# Sessions live on the server (portal/manager_sessions.py); flask-login's own cookie-side
# protection has nothing left to protect, and in "strong" mode it would refuse our loader.
login_manager.session_protection = None
login_manager.login_message = None
bp.context_processor(_user_context_processor)  # current_user for the panel's templates only (see init_app)

# Who may open what. Analysts see aggregates only.
SEES_PERSONAL_DATA = ("owner", "manager")
# The panel's cookie: only the session's random token, only for /panel, never sent cross-site.
COOKIE = "ff_panel"


class PanelUser(UserMixin):
    def __init__(self, manager: Manager, session_id: int):
        self.manager = manager
        self.id = str(manager.id)
        self.username = manager.username
        self.role = manager.role
        self.session_id = session_id

    @property
    def actor(self) -> str:
        return f"manager:{self.username}"


@login_manager.user_loader
def load_user(user_id: str) -> None:
    """Never from Flask's signed cookie: a panel session is a row on the server (see load_session)."""
    return None


@login_manager.request_loader
def load_session(req) -> PanelUser | None:
    found = manager_sessions.lookup(req.cookies.get(COOKIE), manager_sessions.FULL, idle())
    if found.expired:
        g.panel_expired = True
        AuditLog.record(f"manager:{found.manager.username}", "session_expired", None, req.remote_addr)
    return PanelUser(found.manager, found.session_id) if found.session_id is not None else None


def idle() -> datetime.timedelta:
    return datetime.timedelta(minutes=runtime().settings.panel_idle_minutes)


def set_cookie(token: str | None) -> None:
    """Send this session token with the answer (None: delete the browser's copy)."""
    g.panel_cookie = token or ""


def runtime():
    return current_app.extensions["footfall"]


def requires(*roles: str):
    """Only these roles; others get 403 (and the attempt is audited)."""
    def wrap(view):
        @functools.wraps(view)
        def inner(*args, **kwargs):
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if current_user.role not in roles:
                AuditLog.record(current_user.actor, "access_denied", request.path, request.remote_addr)
                g.required_roles = roles  # said on the 403 page (forbidden below)
                abort(403)
            return view(*args, **kwargs)
        return inner
    return wrap


OPEN_ENDPOINTS = {"panel.login", "panel.login_second_factor"}
ENROL_ENDPOINTS = {"panel.setup_2fa", "panel.logout"}


@bp.before_request
def guard():
    settings = runtime().settings
    # PanelFence already turned requests from outside into unknown paths; this stays as a second lock.
    if not from_panel_network(request.environ, settings):
        abort(404)
    g.panel = True
    if not current_user.is_authenticated:
        if g.get("panel_expired"):
            set_cookie(None)
            return redirect(url_for("panel.login", expired=1))
        return None
    if (settings.panel_require_2fa and not current_user.manager.totp_confirmed
            and request.endpoint not in ENROL_ENDPOINTS | OPEN_ENDPOINTS):
        return redirect(url_for("panel.setup_2fa"))
    return None


@bp.errorhandler(403)
def forbidden(exc):
    """A page inside the panel that says which role the page needs (not the guests' error page)."""
    roles = g.get("required_roles") or ("owner",)
    return render_template("panel/forbidden.html", roles=roles), 403


@bp.errorhandler(400)
@bp.errorhandler(404)
@bp.errorhandler(405)
@bp.errorhandler(BadParameters)
def refused(exc):
    """A refused request inside the panel, for a signed-in manager: the panel's own page with its
    navigation, in the panel's language (not the guests' error page). Signed out: the guests' page."""
    from portal.errors import error_page, message_for
    message, code = message_for(exc)
    if not current_user.is_authenticated:
        return error_page(message, code)
    return render_template("panel/error.html", message=message), code


@bp.after_request
def send_cookie(response):
    if "panel_cookie" in g:
        secure = current_app.config["SESSION_COOKIE_SECURE"]
        if g.panel_cookie:
            response.set_cookie(COOKIE, g.panel_cookie, path="/panel", httponly=True, samesite="Strict", secure=secure)
        else:
            response.delete_cookie(COOKIE, path="/panel", httponly=True, samesite="Strict", secure=secure)
    return response


def init_app(app) -> None:
    login_manager.init_app(app)
    # flask-login offers current_user to every template; only the panel's need it. Loading it on
    # visitor pages would run session protection on visitors' sessions and send them a stray
    # remember-cookie deletion with every answer.
    app.template_context_processors[None].remove(_user_context_processor)
    # Importing the modules registers their routes on bp.
    from portal.panel import (account, activation, audiences, auth, compliance, dashboard, health, leads,  # noqa: F401
                              privacy_desk, settings, sign, splash, users, webhooks)
    from portal.panel import wording  # noqa: F401  (the templates' words for raw names)
    auth.configure_throttle(app.extensions["footfall"])
    app.register_blueprint(bp)
