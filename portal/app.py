"""The portal app factory: settings, keys, database, gateway, blueprints."""
from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from portal import clock, consent, erasure_ledger, segments, store_settings
from portal.config import Settings, backups_dir, database_path, key_path, load_settings
from portal.db import database, init_db
from portal.gateway import Gateway, Grant, load_gateway
from portal.identity import Vault, load_or_create_keys
from portal.journal import Journal
from portal.recovery import ensure_sound
from portal.models import Authorization, Device, utcnow
from portal.guards import StrictInt
from portal.funnel import Funnel
from portal.signin_visits import LastSeen
from portal.metrics import DashboardCache
from portal.ratelimit import RateLimiter
from portal.contacts import Contacts
from portal.messages import Dispatcher, load_drivers
from portal.visitors import Visitors

csrf = CSRFProtect()


@dataclass(frozen=True)
class Runtime:
    """What the views need, built once per app: settings, keys, the gateway, the domain."""
    settings: Any
    vault: Vault
    gateway: Gateway
    visitors: Visitors
    limiter: RateLimiter
    funnel: Funnel
    dashboard: DashboardCache
    own_hosts: frozenset[str]
    portal_url: str
    last_seen: LastSeen = field(default_factory=LastSeen)  # signs of life of online devices


def own_hosts(settings) -> frozenset[str]:
    hosts = {urlsplit(settings.portal_url).netloc.lower()}
    hosts.update(h.strip().lower() for h in settings.portal_hosts.split(",") if h.strip())
    if settings.public_url:  # the links in messages (unsubscribe) come in on this host
        hosts.add(urlsplit(settings.public_url).netloc.lower())
    return frozenset(hosts)


def restore_grants(gateway: Gateway) -> int:
    """Re-apply every unexpired authorization, so a restart keeps online who should be."""
    now = utcnow()
    rows = (Authorization.select(Device.mac, Authorization.ip, Authorization.expires_at)
            .join(Device).where(Authorization.revoked_at.is_null() & (Authorization.expires_at > now))
            .order_by(Authorization.expires_at).tuples())
    latest = {mac: Grant(mac, ip, until) for mac, ip, until in rows}
    return gateway.restore(latest.values())


def create_app(config: Settings | Mapping[str, Any] | None = None, gateway: Gateway | None = None) -> Flask:
    """Build the portal app. `config` is a Settings object or overrides of the loaded settings."""
    settings = config if isinstance(config, Settings) else load_settings(**dict(config or {}))
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # waitress warns at every queued request under load: normal for a thread pool, and costly to log.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)

    keys = load_or_create_keys(key_path(settings))
    ensure_sound(database_path(settings), backups_dir(settings))
    clock.load_floor(settings.data_dir)
    init_db(database_path(settings), busy_timeout=settings.db_lock_wait_ms)
    erasure_ledger.replay()  # a database restored from a backup: erasures and withdrawals since, redone
    with database.connection_context():
        settings = store_settings.apply(settings)  # what the owner changed in the panel
        consent.ensure_policies(settings)
        segments.ensure_builtins()
    gateway = gateway or load_gateway(settings)
    with database.connection_context():
        restore_grants(gateway)

    app = Flask(__name__)
    app.url_map.converters["int"] = StrictInt  # ASCII digits, bounded: never "１２" or a 40-digit id (a 500)
    secure = settings.portal_url.startswith("https://")
    app.config.update(
        SECRET_KEY=keys.secret,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        MAX_FORM_MEMORY_SIZE=settings.max_body_bytes,
        MAX_FORM_PARTS=64,
        SESSION_COOKIE_NAME="ff_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        WTF_CSRF_TIME_LIMIT=3600,
        TRAP_HTTP_EXCEPTIONS=False,
    )
    # One connection held for the process's life: SQLite deletes the -wal and -shm files when the
    # last connection closes, and re-creating them on a full card fails every later connection.
    app.extensions["footfall_keeper"] = sqlite3.connect(database_path(settings), check_same_thread=False)
    app.extensions["footfall_keeper"].execute("SELECT count(*) FROM sqlite_master").fetchone()
    vault = Vault(keys)
    # Codes go out beside the request (a bounded queue, retries): a slow provider never holds a page.
    dispatcher = Dispatcher(load_drivers(settings), workers=4, depth=500)
    contacts = Contacts(vault, dispatcher, settings)
    visitors = Visitors(vault, gateway, settings, Journal(Path(settings.data_dir) / "signin-journal.bin", vault),
                        contacts)
    with database.connection_context():
        visitors.replay_journal()  # sign-ins kept while the disk was full, if there is room now
    app.extensions["footfall"] = Runtime(
        settings=settings, vault=vault, gateway=gateway,
        visitors=visitors,
        limiter=RateLimiter(settings.rate_limit_count, settings.rate_limit_window),
        funnel=Funnel(),
        dashboard=DashboardCache(),
        own_hosts=own_hosts(settings), portal_url=settings.portal_url.rstrip("/"),
        last_seen=LastSeen(gap_minutes=float(settings.visit_gap_minutes)),
    )

    from portal import errors, i18n, panel
    from portal.captive import CaptiveProbes, bp as captive_bp
    from portal.guards import body_limits, check_encoding, check_parameters

    # A foreign Host is a captive probe, answered before Flask (see CaptiveProbes); on the own
    # host, the panel from outside panel_networks becomes an unknown path (PanelFence). Then, in
    # order: the logo's larger body limit, and broken encodings refused before CSRF parses forms.
    from portal.panel.fence import PanelFence
    app.wsgi_app = CaptiveProbes(PanelFence(app.wsgi_app, app), app)
    app.before_request(body_limits)
    app.before_request(check_encoding)
    csrf.init_app(app)
    i18n.init_app(app)  # the compiled catalogs and Babel's formats, in the page's language
    app.before_request(check_parameters)  # after CSRF, as when the visitors' blueprint registered it
    app.register_blueprint(captive_bp)
    panel.init_app(app)
    from portal.activation import views as activation_views
    activation_views.init_app(app)
    errors.init_app(app)
    return app
